/**
 * A component's connection to the bus and the typed parts built on it. This is the
 * entry point of `bus/`: components hold a Bus and never see NATS itself.
 */
import {
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import {
  type ConnectionOptions,
  connect,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
} from '@nats-io/transport-node';
import {
  AffinityBucket,
  AllBuckets,
  type BucketSpec,
  ConfigBucket,
  LeaseBucket,
  RegistryBucket,
} from './buckets.js';
import {
  type ControlCodecs,
  type ControlHandler,
  type ControlReply,
  request,
  requestMany,
  type Served,
  serve,
} from './control.js';
import { EventPublisher, type EventPublisherOptions } from './events.js';
import { acquireLease, type LeaseHold, type LeaseOptions } from './lease.js';
import { defaultLogger, type Logger, LogIds } from './log.js';
import { BusMeshConfigStore, type MeshConfigStore } from './mesh-config.js';
import { busMetrics } from './metrics.js';
import { inboxPrefix } from './names.js';
import { BusConfigError, checkProvisioned, type ProvisionOptions, provision } from './provision.js';
import { deniedBy, retryTransient } from './retry.js';
import type { AffinityPreference, ServiceInstance } from './schemas.js';
import { readSecretFile } from './secret-file.js';
import { KvStore } from './store.js';
import {
  type Handler,
  type ReplayOptions,
  replay,
  type SubscribeOptions,
  type Subscription,
  type SubscriptionKind,
  subscribe,
} from './subscriber.js';

export interface Snapshot<K extends 'registrations' | 'affinity'> {
  readonly entries: Map<string, K extends 'registrations' ? ServiceInstance : AffinityPreference>;
  readonly revision: number;
}

/**
 * The one credential a connection presents, always read from a file that only its
 * owner may read (see secret-file.ts): never a secret in a flag, a variable or a log.
 */
export type BusAuth =
  /** A decentralised-auth `.creds` file (JWT and nkey seed). */
  | { readonly credsFile: string }
  /** A user nkey seed (`SU…`), as `halyard certs` writes for each role. */
  | { readonly nkeyFile: string }
  | { readonly user: string; readonly passwordFile: string };

/** PEM files; the CA alone turns TLS on, a certificate and key also present a client certificate. */
export interface BusTls {
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

export interface BusOptions {
  /** NATS URLs, e.g. `nats://10.0.0.1:4222`; any one is enough to find the cluster. */
  readonly servers: string | readonly string[];
  /** Connection name shown by the server's monitoring, e.g. `gateway-1`. */
  readonly name: string;
  readonly auth?: BusAuth;
  readonly tls?: BusTls;
  /**
   * The connection's role on a locked bus (`gateway`, `launcher-<host>`, …): its replies
   * arrive under that role's inbox prefix, the only one its permissions let it read.
   */
  readonly role?: string;
  /** Stream and bucket replicas; default 3 when the server is in a cluster, else 1. */
  readonly replicas?: number;
  readonly logger?: Logger;
  /**
   * For short-lived tools (the CLI): try each server once and fail instead of waiting
   * for the bus to come up; no reconnection afterwards.
   */
  readonly failFast?: boolean;
}

/** What one stream (or bucket) looks like from JetStream: read-only, for health displays. */
export interface StreamHealth {
  readonly name: string;
  readonly replicas: number;
  readonly messages: number;
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** When the last message was stored; undefined while the stream is empty. */
  readonly lastAt: Date | undefined;
  /** The node that leads the stream; undefined without a cluster or while it is elected. */
  readonly leader: string | undefined;
  /** The other nodes: whether each is current, and how far behind. */
  readonly followers: ReadonlyArray<{ name: string; current: boolean; lag: number }>;
}

/** The server a Bus is connected to, as it introduced itself. */
export interface ServerInfo {
  readonly name: string | undefined;
  readonly version: string | undefined;
  /** The cluster's name; undefined for a single server. */
  readonly cluster: string | undefined;
  /** The largest message the server accepts, in bytes. */
  readonly maxPayload: number | undefined;
}

/** The oldest nats-server whose guarantees the bus layer relies on (see store.ts). */
export const MIN_SERVER_VERSION = '2.12.0';

/** Whether dotted version `a` (e.g. `2.15.2`, `2.12.0-beta`) is at least `b`. */
export function atLeast(a: string, b: string): boolean {
  const parts = (v: string) => v.split('-')[0]!.split('.').map(Number);
  const [x, y] = [parts(a), parts(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

export class Bus {
  private readonly closing = new AbortController();
  private linked = true;

  private constructor(
    private readonly connection: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly kvm: Kvm,
    /** Replicas of every stream and bucket this bus provisions. */
    readonly replicas: number,
    readonly logger: Logger,
    /** The role whose credential the connection uses, when it says (BusOptions.role). */
    private readonly role: string | undefined,
  ) {}

  static async connect(options: BusOptions): Promise<Bus> {
    const logger = options.logger ?? defaultLogger('halyard-bus');
    const nc = await connect(await connectionOptions(options));
    const version = nc.info?.version ?? '0.0.0';
    if (!atLeast(version, MIN_SERVER_VERSION)) {
      logger.error(
        {
          msgId: LogIds.serverTooOld,
          server: nc.getServer(),
          version,
          minimum: MIN_SERVER_VERSION,
        },
        'nats-server too old',
      );
      await nc.close();
      throw new BusConfigError(
        `nats-server ${version} at ${nc.getServer()} is older than ${MIN_SERVER_VERSION}, which Halyard needs for per-message TTLs and enforced compare-and-set on replicated streams: upgrade the bus (deploy/nats/ensure-nats-server.sh builds a current one)`,
      );
    }
    const replicas = options.replicas ?? (nc.info?.cluster ? 3 : 1);
    logger.info(
      {
        msgId: LogIds.connected,
        server: nc.getServer(),
        cluster: nc.info?.cluster,
        version: nc.info?.version,
        replicas,
      },
      'connected to the bus',
    );
    // Checks the JetStream API, which has no leader for a moment after a node dies.
    const jsm = await retryTransient(() => jetstreamManager(nc)).catch(async (error: unknown) => {
      await nc.close();
      if (!deniedBy(error)) throw error;
      throw new BusConfigError(
        `the bus refused ${options.role ? `role ${options.role}` : 'this connection'} its first request (${(error as Error).message}): ` +
          'name the role whose credential it uses (HALYARD_NATS_ROLE, bus.role) so its replies arrive where that role may read them',
        { cause: error },
      );
    });
    const js = jetstream(nc);
    const bus = new Bus(nc, js, jsm, new Kvm(js), replicas, logger, options.role);
    void bus.logStatus();
    return bus;
  }

  /**
   * Creates every stream and bucket, or checks an existing one has the expected
   * configuration: the admin's step (`halyard bus provision`).
   */
  async provision(options: Partial<ProvisionOptions> = {}): Promise<void> {
    const upgraded = new Set(
      await provision(this.jsm, this.kvm, { replicas: this.replicas, ...options }, this.logger),
    );
    // A bucket made by an older Halyard holds values written without a TTL.
    for (const spec of AllBuckets) {
      if (!upgraded.has(spec.name)) continue;
      const { rewritten, removed } = await (await this.store(spec)).giveLifetimes();
      if (rewritten + removed === 0) continue;
      this.logger.warn(
        { msgId: LogIds.lifetimesGiven, bucket: spec.name, rewritten, removed },
        'values written without a per-message TTL given one, lapsed ones removed',
      );
    }
  }

  /**
   * Throws a BusConfigError saying what to run when a stream or bucket is missing or
   * not as Halyard expects; changes nothing. What a component runs at start-up.
   */
  checkProvisioned(options: Partial<ProvisionOptions> = {}): Promise<void> {
    return checkProvisioned(this.jsm, { replicas: this.replicas, ...options }, this.role);
  }

  /** Waits until this process holds the leader lease `name` (lease.ts). */
  async lease(name: string, options: LeaseOptions): Promise<LeaseHold> {
    return acquireLease(await this.store(LeaseBucket), name, options, this.logger);
  }

  async store<T>(spec: BucketSpec<T>): Promise<KvStore<T>> {
    const kv = await this.kvm.open(spec.name, { allow_direct: spec.allowDirect });
    return new KvStore(this.js, kv, spec, this.logger, this.closing.signal);
  }

  /** The versions of the mesh configuration (mesh-config.ts). */
  meshConfig(): MeshConfigStore {
    return new BusMeshConfigStore(
      () => this.store(ConfigBucket),
      this.jsm,
      this.logger,
      this.closing.signal,
    );
  }

  /**
   * Every live value of a bucket and the revision it is current to: subscribe with
   * `from: { seq: revision + 1 }` to follow it without a gap or a double count.
   */
  async snapshot<K extends 'registrations' | 'affinity'>(kind: K): Promise<Snapshot<K>> {
    const spec = (
      kind === 'registrations' ? RegistryBucket : AffinityBucket
    ) as BucketSpec<unknown>;
    const view = (await this.store(spec)).view();
    try {
      await view.ready;
      return { entries: new Map(view.entries()), revision: view.lastRevision } as Snapshot<K>;
    } finally {
      view.stop();
    }
  }

  /** Every stream of the account (Halyard's, and the buckets' KV_ streams), with its cluster state. */
  async streams(): Promise<StreamHealth[]> {
    const result: StreamHealth[] = [];
    for await (const info of this.jsm.streams.list()) {
      result.push({
        name: info.config.name,
        replicas: info.config.num_replicas,
        messages: info.state.messages,
        firstSeq: info.state.first_seq,
        lastSeq: info.state.last_seq,
        lastAt: info.state.last_seq > 0 ? new Date(info.state.last_ts) : undefined,
        leader: info.cluster?.leader,
        followers: (info.cluster?.replicas ?? []).map((r) => ({
          name: r.name,
          current: r.current,
          lag: r.lag ?? 0,
        })),
      });
    }
    return result.sort((a, b) => a.name.localeCompare(b.name));
  }

  publisher(options?: EventPublisherOptions): EventPublisher {
    return new EventPublisher(this.js, this.logger, this.closing.signal, options);
  }

  /** Typed deliveries of one kind; see SubscribeOptions. */
  subscribe<K extends SubscriptionKind>(
    options: SubscribeOptions<K>,
    handler: Handler<K>,
  ): Promise<Subscription> {
    return subscribe(this.js, this.jsm, options, handler, this.logger, this.closing.signal);
  }

  /** Delivers every stored message of a kind and resolves, with their count, once caught up. */
  replay<K extends SubscriptionKind>(
    options: ReplayOptions<K>,
    handler: Handler<K>,
  ): Promise<number> {
    return replay(this.js, this.jsm, options, handler, this.logger, this.closing.signal);
  }

  /** Answers control requests on `subjects` (see Subjects.control) until stopped. */
  serve<Req, Res>(
    subjects: readonly string[],
    codecs: ControlCodecs<Req, Res>,
    handler: ControlHandler<Req, Res>,
  ): Promise<Served> {
    return serve(this.connection, subjects, codecs, handler, this.logger);
  }

  /** One control request to one responder; a failed reply throws its ControlError. */
  request<Req, Res>(
    subject: string,
    value: Req,
    codecs: ControlCodecs<Req, Res>,
    timeoutMs = 5000,
  ): Promise<Res> {
    return request(this.connection, subject, value, codecs, timeoutMs);
  }

  /** A control request fanned out to every responder; replies that arrive within `maxWaitMs`. */
  requestMany<Req, Res>(
    subject: string,
    value: Req,
    codecs: ControlCodecs<Req, Res>,
    maxWaitMs = 1000,
  ): Promise<Array<ControlReply<Res>>> {
    return requestMany(this.connection, subject, value, codecs, maxWaitMs);
  }

  /** The server this connection reached (it changes after a reconnect). */
  get server(): ServerInfo {
    const info = this.connection.info;
    return {
      name: info?.server_name,
      version: info?.version,
      cluster: info?.cluster,
      maxPayload: info?.max_payload,
    };
  }

  /**
   * Whether the connection is up (false between a disconnect and the reconnect), so a
   * component can hold writes it would rather re-check than have replayed blindly.
   */
  get connected(): boolean {
    return this.linked && !this.connection.isClosed();
  }

  /** Stops retries, flushes what was sent and closes the connection. */
  async close(): Promise<void> {
    this.closing.abort(new Error('bus closed'));
    if (!this.connection.isClosed()) await this.connection.drain();
  }

  private async logStatus(): Promise<void> {
    const ids: Record<string, string> = {
      disconnect: LogIds.disconnected,
      reconnecting: LogIds.reconnecting,
      reconnect: LogIds.reconnected,
      error: LogIds.connectionError,
      update: LogIds.clusterUpdate,
      staleConnection: LogIds.staleConnection,
    };
    for await (const status of this.connection.status()) {
      busMetrics.connectionEvents.inc({ type: status.type });
      if (status.type === 'disconnect') this.linked = false;
      else if (status.type === 'reconnect') this.linked = true;
      const msgId = ids[status.type];
      if (!msgId) continue;
      const { type, ...details } = status as { type: string } & Record<string, unknown>;
      const fields = 'error' in details ? { err: details.error } : details;
      const level = msgId.endsWith('I') ? 'info' : msgId.endsWith('W') ? 'warn' : 'error';
      this.logger[level]({ msgId, ...fields }, `bus connection: ${type}`);
    }
    this.logger.info({ msgId: LogIds.closed }, 'bus connection closed');
  }
}

async function connectionOptions(options: BusOptions): Promise<ConnectionOptions> {
  const base: ConnectionOptions = {
    servers: typeof options.servers === 'string' ? options.servers : [...options.servers],
    name: options.name,
    // A replica outlives any outage of the bus: it keeps serving from its local views.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1000,
    reconnectJitter: 500,
    // A server cut off from this client by a partition sends no reset: without pings
    // answered the client notices after pingInterval × maxPingOut and moves to another
    // server. The default (2 min × 2) leaves a component's views frozen for minutes.
    pingInterval: 2000,
    maxPingOut: 2,
    // Each attempt to (re)connect: one that reaches a cut-off server fails after this
    // instead of the default 20 s, and the next server is tried.
    timeout: 2000,
    waitOnFirstConnect: true,
    ...(options.failFast
      ? { maxReconnectAttempts: 0, waitOnFirstConnect: false, timeout: 2000, reconnect: false }
      : {}),
    ...(options.tls ? { tls: tlsOptions(options.tls) } : {}),
    ...(options.role ? { inboxPrefix: inboxPrefix(options.role) } : {}),
  };
  const auth = options.auth;
  if (!auth) return base;
  if ('credsFile' in auth) {
    const creds = readSecretFile(auth.credsFile, 'NATS credentials file');
    return { ...base, authenticator: credsAuthenticator(creds) };
  }
  if ('nkeyFile' in auth) {
    const seed = readSecretFile(auth.nkeyFile, 'NATS nkey seed file').toString('utf8').trim();
    return { ...base, authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)) };
  }
  const pass = readSecretFile(auth.passwordFile, 'NATS password file').toString('utf8').trim();
  return { ...base, user: auth.user, pass };
}

function tlsOptions(tls: BusTls): NonNullable<ConnectionOptions['tls']> {
  if (tls.keyFile) readSecretFile(tls.keyFile, 'NATS client key'); // refuses a loose key early
  return {
    ...(tls.caFile ? { caFile: tls.caFile } : {}),
    ...(tls.certFile ? { certFile: tls.certFile } : {}),
    ...(tls.keyFile ? { keyFile: tls.keyFile } : {}),
  };
}
