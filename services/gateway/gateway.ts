/**
 * A gateway replica: the HTTP/2 listener (h2c, or TLS with ALPN h2), the routing table
 * fed by the registry's local view, the proxy, gRPC health and the admin endpoint.
 * `stop()` is the graceful shutdown: GOAWAY to clients, calls in flight finish within
 * a timeout, GATEWAY_STOPPING is published.
 */
import { readFile } from 'node:fs/promises';
import {
  createSecureServer,
  createServer,
  type Http2SecureServer,
  type Http2Server,
  type Http2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import {
  type AddressInfo,
  createServer as createNetServer,
  type Server,
  type Socket,
} from 'node:net';
import type { Logger } from 'pino';
import {
  AffinityBucket,
  type AffinityPreference,
  type Bus,
  type EventPublisher,
  type KvStore,
  type LocalView,
  RegistryBucket,
  type ServiceInstance,
  sweep,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { type AdminServer, startAdmin } from '../common/admin.js';
import type { BalancingSettings } from '../common/lb-metadata.js';
import { AffinityTable } from './affinity.js';
import { type Balancer, HeaderBalancer, RoundRobin, UserBalancer } from './balancer.js';
import type { GatewayConfig } from './config.js';
import { type EjectionEvent, Ejector } from './ejection.js';
import { Health } from './health.js';
import { Identities } from './identity.js';
import { GatewayLogIds } from './log-ids.js';
import { gatewayMetrics, registerGauges } from './metrics.js';
import { GatewayProxy } from './proxy.js';
import { RetryBudget } from './retry-budget.js';
import { RoutingTable } from './routing-table.js';
import { Upstream, upstreamStats } from './upstream.js';

const { Kind } = halyard.gateway.v1.GatewayEvent;
/** The client connection preface of HTTP/2 (RFC 9113 §3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const HTTP1_BODY = 'this is a gRPC gateway: it speaks HTTP/2 only (gRPC over h2 or h2c)\n';
const HTTP1_REFUSAL = `HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ${HTTP1_BODY.length}\r\n\r\n${HTTP1_BODY}`;

export class Gateway {
  private stopping = false;
  private loaded = false;
  private readonly clientSessions = new Set<Http2Session>();
  /** Every client connection, HTTP/2 or not (refused HTTP/1.x, failed TLS handshakes). */
  private readonly sockets = new Set<Socket>();
  private readonly publisher: EventPublisher;
  private eventSeq = 0;
  private sweepTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly config: GatewayConfig,
    bus: Bus,
    private readonly logger: Logger,
    private readonly view: LocalView<ServiceInstance>,
    private readonly affinityView: LocalView<AffinityPreference>,
    private readonly affinityStore: KvStore<AffinityPreference>,
    readonly affinity: AffinityTable,
    readonly table: RoutingTable,
    readonly proxy: GatewayProxy,
    private readonly h2: Http2Server | Http2SecureServer,
    private readonly listener: Server,
    private admin: AdminServer | undefined,
  ) {
    this.publisher = bus.publisher();
  }

  /**
   * Starts serving; calls get UNAVAILABLE until the registry and affinity views are
   * loaded (see `ready`).
   */
  static async start(config: GatewayConfig, bus: Bus, logger: Logger): Promise<Gateway> {
    const identities = await Identities.load({
      meshSecret: config.affinity.meshSecret,
      ...config.affinity.jwt,
    });
    const view = (await bus.store(RegistryBucket)).view();
    const affinityStore = await bus.store(AffinityBucket);
    // The table holds the preferences compactly; the view only feeds it.
    const affinityView = affinityStore.view({ hold: false });
    const affinity = new AffinityTable(
      affinityView,
      affinityStore,
      { gatewayId: config.id, connected: () => bus.connected },
      logger,
    );
    let gateway: Gateway | undefined;
    const moved = (serviceId: string, userKey: string, from: string, to: string) => {
      logger.info(
        { msgId: GatewayLogIds.affinityMoved, serviceId, instanceId: from, toInstanceId: to },
        'sticky user moved off an instance that is down',
      );
      void gateway?.publish(Kind.AFFINITY_MOVED, {
        serviceId,
        instanceId: from,
        toInstanceId: to,
        userKey,
        reason: 'preferred instance down (lb.whenDown=failover)',
      });
    };
    const balancerFor = (serviceId: string, settings: BalancingSettings): Balancer => {
      if (settings.policy === 'header') return new HeaderBalancer(serviceId, settings);
      if (settings.policy === 'user') {
        if (!identities.configured) {
          logger.warn(
            { msgId: GatewayLogIds.identityUnconfigured, serviceId },
            'service asks for lb.policy=user but this gateway has no mesh secret or JWT key: its users get UNAUTHENTICATED',
          );
        }
        return new UserBalancer(serviceId, settings, affinity, moved);
      }
      return new RoundRobin();
    };
    const publishEjection: EjectionEvent = (kind, endpoint, ejectionSeconds, reason) =>
      gateway?.publish(kind, {
        serviceId: endpoint.serviceId,
        instanceId: endpoint.id,
        ejectionSeconds,
        reason,
      });
    const ejector = new Ejector(
      {
        consecutiveFailures: config.ejection.consecutiveFailures,
        baseMs: config.ejection.baseSeconds * 1000,
        maxMs: config.ejection.maxSeconds * 1000,
      },
      publishEjection,
      logger,
    );
    const internalTls = config.upstream.tls;
    const upstreamOptions = {
      windowBytes: config.limits.windowBytes,
      backoffBaseMs: config.upstream.backoffBaseMs,
      backoffMaxMs: config.upstream.backoffMaxMs,
      ...(internalTls
        ? {
            tls: {
              ca: await readFile(internalTls.caFile),
              ...(internalTls.certFile ? { cert: await readFile(internalTls.certFile) } : {}),
              ...(internalTls.keyFile ? { key: await readFile(internalTls.keyFile) } : {}),
            },
          }
        : {}),
    };
    const table = new RoutingTable(
      view,
      (address) => new Upstream(address, upstreamOptions, logger),
      ejector,
      logger,
      balancerFor,
    );
    const notReady = () => gateway?.notReady();
    const health = new Health(table, () => gateway?.notReady() === undefined, config.id);
    let proxy: GatewayProxy | undefined;
    const budget = new RetryBudget(
      config.retry.budgetRatio,
      config.retry.minConcurrent,
      () => proxy!.active,
    );
    proxy = new GatewayProxy(
      table,
      budget,
      ejector,
      health,
      {
        gatewayId: config.id,
        retryBufferBytes: config.retry.bufferBytes,
        maxAttempts: config.retry.maxAttempts,
        maxConcurrentCalls: config.limits.maxConcurrentCalls,
        maxTimeoutMs: config.limits.maxTimeoutMs,
        maxHeaderListBytes: config.limits.maxHeaderListBytes,
      },
      logger,
      notReady,
      identities,
    );
    const settings = {
      maxHeaderListSize: config.limits.maxHeaderListBytes,
      initialWindowSize: config.limits.windowBytes,
      enablePush: false,
    };
    const h2 = config.tls
      ? createSecureServer({
          cert: await readFile(config.tls.certFile),
          key: await readFile(config.tls.keyFile),
          ALPNProtocols: ['h2'],
          settings,
          maxSessionMemory: 64,
        })
      : createServer({ settings, maxSessionMemory: 64 });
    const listener = config.tls ? (h2 as Http2SecureServer) : sniffingListener(h2 as Http2Server);
    gateway = new Gateway(
      config,
      bus,
      logger,
      view,
      affinityView,
      affinityStore,
      affinity,
      table,
      proxy,
      h2,
      listener,
      undefined,
    );
    gateway.wire();
    registerGauges({
      activeCalls: () => proxy.active,
      upstreamSessions: () => upstreamStats.sessions,
      ejectedInstances: () => ejector.ejected,
      affinityPreferences: () => affinity.size,
    });
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(config.listen.port, config.listen.host, () => {
        listener.off('error', reject);
        resolve();
      });
    });
    gateway.admin = await startAdmin({
      host: config.admin.host,
      port: config.admin.port,
      notReady,
    });
    logger.info(
      {
        msgId: GatewayLogIds.listening,
        port: gateway.port,
        adminPort: gateway.adminPort,
        tls: !!config.tls,
      },
      'gateway listening',
    );
    void Promise.all([view.ready, affinityView.ready]).then(() => {
      gateway.loaded = true;
      logger.info(
        { msgId: GatewayLogIds.ready, routes: table.size, preferences: affinity.size },
        'registry and affinity views loaded: ready',
      );
      gateway.publish(Kind.GATEWAY_STARTED, { reason: 'registry and affinity views loaded' });
      gateway.scheduleSweep(bus);
    });
    return gateway;
  }

  get port(): number {
    return (this.listener.address() as AddressInfo).port;
  }

  get adminPort(): number {
    return this.admin?.port ?? 0;
  }

  /** Why this replica should not get traffic, or undefined when it should. */
  notReady(): string | undefined {
    if (this.stopping) return 'is stopping';
    if (!this.loaded) return 'is starting: the registry and affinity views are not loaded yet';
    return undefined;
  }

  /** Resolves when the registry and affinity views are loaded and calls are routed. */
  async ready(): Promise<void> {
    await Promise.all([this.view.ready, this.affinityView.ready]);
    await waitFor(() => this.loaded, 1000);
  }

  /** Graceful stop: GOAWAY, in-flight calls finish (up to the stop timeout), then close. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const timeoutMs = this.config.stopTimeoutSeconds * 1000;
    this.logger.info(
      { msgId: GatewayLogIds.stopping, activeCalls: this.proxy.active, timeoutMs },
      'stopping: GOAWAY sent, calls in flight finish',
    );
    const stoppingEvent = this.publish(Kind.GATEWAY_STOPPING, { reason: 'stop requested' });
    const listenerClosed = new Promise<void>((resolve) => this.listener.close(() => resolve()));
    for (const session of this.clientSessions) session.close();
    const drained = await waitFor(() => this.clientSessions.size === 0, timeoutMs);
    if (!drained) {
      this.logger.warn(
        { msgId: GatewayLogIds.stopTimedOut, activeCalls: this.proxy.active },
        'stop timeout: cancelling calls still in flight',
      );
      for (const session of this.clientSessions) session.destroy();
    }
    // What is left carries no call: connections that never became HTTP/2 sessions.
    for (const socket of this.sockets) socket.destroy();
    await listenerClosed;
    this.table.close();
    this.view.stop();
    clearTimeout(this.sweepTimer);
    this.affinity.close();
    this.affinityView.stop();
    await this.admin?.close();
    // The event is best effort within a bound: the bus may be the thing that is down.
    await Promise.race([
      stoppingEvent,
      new Promise((resolve) => setTimeout(resolve, 2000).unref()),
    ]);
    this.logger.info({ msgId: GatewayLogIds.stopped }, 'gateway stopped');
  }

  /**
   * Removes idle preferences from the bucket now and then (jittered, so replicas
   * rarely sweep together); readers already ignore them, this keeps the bucket and
   * every replica's load time from growing with users who left.
   */
  private scheduleSweep(bus: Bus): void {
    const everyMs = this.config.affinity.sweepSeconds * 1000;
    if (everyMs === 0 || this.stopping) return;
    this.sweepTimer = setTimeout(
      async () => {
        if (bus.connected) {
          await sweep(
            this.affinity,
            this.affinityStore,
            { graceMs: this.config.affinity.sweepGraceSeconds * 1000 },
            this.logger,
          ).catch((error: Error) =>
            this.logger.warn(
              { msgId: GatewayLogIds.affinityWriteFailed, err: error.message },
              'affinity sweep failed; next round retries',
            ),
          );
        }
        this.scheduleSweep(bus);
      },
      everyMs * (0.5 + Math.random()),
    );
    this.sweepTimer.unref();
  }

  private wire(): void {
    this.listener.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.h2.on('stream', (stream: ServerHttp2Stream, headers) => {
      this.proxy.handle(stream, headers);
    });
    this.h2.on('session', (session: Http2Session) => {
      this.clientSessions.add(session);
      session.setLocalWindowSize(this.config.limits.windowBytes);
      session.once('close', () => this.clientSessions.delete(session));
      session.on('error', (error: Error) => {
        gatewayMetrics.rejected.inc({ reason: 'session-error' });
        this.logger.warn(
          { msgId: GatewayLogIds.clientSessionError, err: error.message },
          'client connection failed',
        );
      });
      if (this.stopping) session.close();
    });
    this.h2.on('sessionError', () => {});
    // TLS clients that offered no ALPN at all are HTTP/1.x clients: say what this is.
    // (Those offering only other protocols get TLS's no_application_protocol alert.)
    this.h2.on('unknownProtocol', (socket: Socket) => refuseHttp1(socket));
    this.h2.on('tlsClientError', () => gatewayMetrics.rejected.inc({ reason: 'tls' }));
  }

  private publish(
    kind: number,
    fields: {
      serviceId?: string;
      instanceId?: string;
      toInstanceId?: string;
      userKey?: string;
      ejectionSeconds?: number;
      reason: string;
    },
  ): Promise<unknown> {
    const now = Date.now();
    const event = {
      eventId: `${this.config.id}-${now}-${++this.eventSeq}`,
      kind,
      occurredAtMs: now,
      gatewayId: this.config.id,
      serviceId: fields.serviceId ?? '',
      instanceId: fields.instanceId ?? '',
      toInstanceId: fields.toInstanceId ?? '',
      userKey: fields.userKey ?? '',
      ejectionSeconds: fields.ejectionSeconds ?? 0,
      reason: fields.reason,
    };
    return this.publisher.publish({ source: 'gateway', event }).catch((error: Error) => {
      this.logger.error(
        { msgId: GatewayLogIds.eventPublishFailed, kind, err: error.message },
        'gateway event not published',
      );
    });
  }
}

/**
 * h2c with prior knowledge only: a connection that does not open with the HTTP/2
 * preface is an HTTP/1.x client and gets a plain 505 instead of binary frames.
 */
function sniffingListener(h2: Http2Server): Server {
  return createNetServer((socket) => {
    let seen: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      if (seen.subarray(0, n).compare(PREFACE, 0, n) !== 0) {
        socket.off('data', onData);
        refuseHttp1(socket);
        return;
      }
      if (seen.length < PREFACE.length) return;
      socket.off('data', onData);
      socket.pause();
      socket.unshift(seen);
      h2.emit('connection', socket);
    };
    socket.on('data', onData);
    socket.on('error', () => {});
    socket.setNoDelay(true);
  });
}

function refuseHttp1(socket: Socket): void {
  gatewayMetrics.rejected.inc({ reason: 'http1' });
  socket.end(HTTP1_REFUSAL);
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}
