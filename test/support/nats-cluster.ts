/**
 * Shared NATS cluster harness for integration tests.
 *
 * Runs real `nats-server` processes (1 or 3 nodes, JetStream with file storage)
 * on loopback, so tests exercise the same replication, leader election and
 * recovery paths as production instead of a mock.
 *
 * Config, spawn, readiness and stop are `services/cli/local-nats.ts`, the same
 * code that runs `halyard up`; its header lists what nats-server does
 * that shaped readiness (`/healthz` 503 until current with a meta leader, stale
 * meta leaders after a kill, routes before JetStream). What stays here is what
 * only tests need: temp dirs, free ports, orphan reaping, kill -9 and restart,
 * and the stream leader.
 *
 * Readiness and leadership come from the servers' HTTP monitoring endpoints, so
 * they do not depend on (or mask bugs in) the client library under test. An open
 * JetStream cluster is then provisioned as an admin would (`halyard bus provision`),
 * since components only check that the bus is provisioned.
 *
 * Behaviour of nats-server that shaped this file (seen on 2.9.10, still handled on 2.15.2):
 * - After the meta leader is SIGKILLed, survivors keep answering 200 on
 *   `/healthz` and keep naming the dead node in `/jsz` `meta_cluster.leader`
 *   for a few seconds (see local-nats.ts for how "ready" copes).
 * - Stream leadership (`/jsz?accounts=true&streams=true`,
 *   `stream_detail[].cluster.leader`) is also reported stale by followers
 *   after a kill, and a freshly restarted node briefly reports the leader
 *   recorded in its own store (possibly itself). A leader is accepted only
 *   when exactly one node claims it and every running node agrees.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { pino } from 'pino';
import { Bus } from '../../bus/index.js';
import { makeBusBundle, roleFiles } from '../../services/cli/certs-bundle.js';
import { LocalNats, type LocalNatsNode, readTail } from '../../services/cli/local-nats.js';
import { type Jsz, monitorJson } from '../../services/cli/nats-monitor.js';
import { commandLineOf, isAlive } from '../../services/common/proc.js';
import { sleep } from '../../services/common/sleep.js';

export interface NatsNode {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly running: boolean;
  pid?: number;
}

export interface ClusterOptions {
  /** Number of servers; 3 gives a real RAFT quorum that survives one failure. Default 3. */
  nodes?: 1 | 3;
  /** Enable JetStream (file storage). Default true. */
  jetstream?: boolean;
  /** JetStream `sync_interval` (e.g. `always`); the server's default when absent. */
  syncInterval?: string;
  /**
   * Run the locked bus of deploy/nats (TLS, route certificates, role users) with a
   * bundle made by `halyard certs` for nodes n0…; default false: open, on loopback.
   */
  secure?: boolean;
  /**
   * Provision Halyard's streams and buckets once the cluster is ready, as the admin
   * does before any component starts. Default true for an open JetStream cluster;
   * a secure one is provisioned by its test, with the admin role.
   */
  provision?: boolean;
  /** Secure only: the launcher host ids given a role (default: the node names). */
  launcherHosts?: readonly string[];
}

/** How a role connects to a secure cluster: the bus settings a component would be given. */
export interface RoleConnection {
  readonly servers: string[];
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  readonly nkey: string;
  readonly role: string;
}

const BIN = process.env.NATS_SERVER_BIN ?? 'nats-server';
const DIR_PREFIX = 'halyard-nats-';
const CLUSTER_NAME = 'halyard-test';
const POLL_MS = 50;
const DEFAULT_READY_TIMEOUT_MS = 30_000;
const DEFAULT_LEADER_TIMEOUT_MS = 15_000;
// A graceful JetStream shutdown normally takes well under a second; past this we SIGKILL
// so a wedged server can never hang the test run.
const STOP_TIMEOUT_MS = 10_000;
// Ports are picked before the servers bind them; another process can grab one in between.
const START_ATTEMPTS = 3;

export class NatsCluster {
  readonly nodes: readonly NatsNode[];
  readonly servers: string[];
  readonly dir: string;
  /** Secure only: the directory `halyard certs` wrote (CA, host and role files). */
  readonly bundle: string | undefined;

  readonly #local: LocalNats;
  #closing: Promise<void> | undefined;

  private constructor(dir: string, local: LocalNats, bundle: string | undefined) {
    this.dir = dir;
    this.bundle = bundle;
    this.#local = local;
    this.nodes = local.nodes;
    this.servers = local.servers;
  }

  static async start(opts: ClusterOptions = {}): Promise<NatsCluster> {
    const size = opts.nodes ?? 3;
    const jetstream = opts.jetstream ?? true;
    reapOrphans();
    for (let attempt = 1; ; attempt++) {
      const cluster = await NatsCluster.#create(size, jetstream, opts);
      try {
        await cluster.startAll();
        if (jetstream && !opts.secure && (opts.provision ?? true)) await cluster.#provision();
        return cluster;
      } catch (err) {
        const portClash = cluster.#local.nodes.some((n) =>
          readTail(n.logPath, 50).includes('address already in use'),
        );
        await cluster.close();
        if (!portClash || attempt >= START_ATTEMPTS) throw err;
      }
    }
  }

  static async #create(
    size: number,
    jetstream: boolean,
    opts: ClusterOptions,
  ): Promise<NatsCluster> {
    const syncInterval = opts.syncInterval;
    // Our pid is in the name as well as in owner.pid, so a concurrent reaper can tell
    // the dir is live even before owner.pid has been written.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${DIR_PREFIX}${process.pid}-`));
    fs.writeFileSync(path.join(dir, 'owner.pid'), `${process.pid}\n`);
    const port = await freePorts(size * 3);
    const names = Array.from({ length: size }, (_, i) => `n${i}`);
    const bundle = opts.secure ? path.join(dir, 'bus') : undefined;
    if (bundle) {
      await makeBusBundle({
        dir: bundle,
        hosts: names.map((name) => ({ name, address: '127.0.0.1' })),
        ...(opts.launcherHosts ? { launcherHosts: opts.launcherHosts } : {}),
        storeDir: path.join(dir, 'store'),
      });
    }
    const local = new LocalNats({
      ...(bundle ? { secureBundle: bundle } : {}),
      clusterName: CLUSTER_NAME,
      jetstream,
      maxMemoryStore: '64MB',
      maxFileStore: '512MB',
      ...(syncInterval ? { syncInterval } : {}),
      bin: BIN,
      nodes: Array.from({ length: size }, (_, i) => {
        const name = `n${i}`;
        return {
          name,
          port: port(),
          httpPort: port(),
          clusterPort: port(),
          confPath: path.join(dir, `${name}.conf`),
          logPath: path.join(dir, `${name}.log`),
          pidPath: path.join(dir, `${name}.pid`),
          storeDir: path.join(dir, name, 'js'),
        };
      }),
    });
    local.writeConfigs();
    const cluster = new NatsCluster(dir, local, bundle);
    registry.add(cluster);
    installExitHandlers();
    return cluster;
  }

  async #provision(): Promise<void> {
    const bus = await Bus.connect({
      servers: this.servers,
      name: 'harness-provision',
      logger: pino({ level: 'warn' }),
    });
    try {
      await bus.provision();
    } finally {
      await bus.close();
    }
  }

  /** Secure only: the files a role (`gateway`, `launcher-n0`, …) connects with. */
  role(role: string): RoleConnection {
    if (!this.bundle) throw new Error('an open cluster has no roles: start it with secure: true');
    return { servers: this.servers, role, ...roleFiles(this.bundle, role) };
  }

  /** SIGTERM and wait for exit; nats-server shuts JetStream down cleanly, so peers see a graceful departure. */
  async stopNode(i: number): Promise<void> {
    await this.#local.stop(i, 'SIGTERM', STOP_TIMEOUT_MS);
  }

  /** SIGKILL and wait for exit: an abrupt crash, peers have to detect it by timeout. */
  async killNode(i: number): Promise<void> {
    await this.#local.stop(i, 'SIGKILL', STOP_TIMEOUT_MS);
  }

  /**
   * Restart node i with its original config, store and ports. Resolves once the whole
   * cluster is ready again, which needs a quorum of running nodes for a 3-node cluster.
   */
  async startNode(i: number): Promise<void> {
    this.#spawn(this.#local.node(i));
    await this.waitReady();
  }

  async stopAll(): Promise<void> {
    await this.#local.stopAll('SIGTERM', STOP_TIMEOUT_MS);
  }

  /** Spawn every stopped node at once (a lone node can never elect a meta leader), then wait. */
  async startAll(): Promise<void> {
    for (const n of this.#local.nodes) if (!n.running) this.#spawn(n);
    await this.waitReady();
  }

  async waitReady(timeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<void> {
    await this.#local.waitReady(timeoutMs);
  }

  /** Index of the node currently leading `stream`; waits (bounded) for an election in progress. */
  async streamLeader(stream: string, timeoutMs = DEFAULT_LEADER_TIMEOUT_MS): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let lastViews = '';
    for (;;) {
      const crash = this.#local.crashError();
      if (crash) throw crash;
      const running = this.#local.nodes.filter((n) => n.running);
      const views = await Promise.all(
        running.map(async (n) => ({ n, leader: await streamLeaderSeenBy(n, stream) })),
      );
      const seen = views.filter((v) => v.leader !== undefined);
      const [claim, ...otherClaims] = views.filter((v) => v.leader === v.n.name);
      if (claim && otherClaims.length === 0 && seen.every((v) => v.leader === claim.n.name))
        return claim.n.index;
      lastViews = views.map((v) => `${v.n.name}: ${v.leader ?? 'none'}`).join(', ');
      if (Date.now() >= deadline) {
        throw new Error(
          seen.length === 0
            ? `stream "${stream}" is not known to any running node (${running.map((n) => n.name).join(', ') || 'none running'})`
            : `no agreed leader for stream "${stream}" after ${timeoutMs} ms (leader seen by ${lastViews})`,
        );
      }
      await sleep(POLL_MS);
    }
  }

  /** Kill everything and delete the temp dir. Safe to call repeatedly and concurrently. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#local.stopAll('SIGKILL', STOP_TIMEOUT_MS);
      fs.rmSync(this.dir, { recursive: true, force: true });
      registry.delete(this);
      if (registry.size === 0) removeExitHandlers();
    })();
    return this.#closing;
  }

  #spawn(n: LocalNatsNode): void {
    if (this.#closing) throw new Error('cluster is closed');
    this.#local.spawn(n.index);
  }
}

/** Reserve `count` distinct free loopback ports; returns a function handing them out in turn. */
async function freePorts(count: number): Promise<() => number> {
  const ports = new Set<number>();
  while (ports.size < count) {
    const srv = net.createServer();
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', resolve);
    });
    const addr = srv.address();
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    if (addr && typeof addr === 'object') ports.add(addr.port);
  }
  const list = [...ports];
  return () => {
    const p = list.shift();
    if (p === undefined) throw new Error('freePorts: asked for more ports than reserved');
    return p;
  };
}

async function streamLeaderSeenBy(n: LocalNatsNode, stream: string): Promise<string | undefined> {
  // 2.9.10 already includes account_details for streams=true; accounts=true keeps newer servers the same.
  const jsz = (await monitorJson(n.httpPort, '/jsz?accounts=true&streams=true')) as Jsz | undefined;
  for (const acc of jsz?.account_details ?? []) {
    for (const s of acc.stream_detail ?? []) {
      if (s.name === stream) return s.cluster?.leader || undefined;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Process-level cleanup. nats-server children outlive their parent, so every
// way out of the test process has to take them along.

const registry = new Set<NatsCluster>();
let handlersInstalled = false;

function killAllSync(): void {
  for (const cluster of registry) {
    for (const n of cluster.nodes) {
      if (n.pid === undefined) continue;
      try {
        process.kill(n.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    fs.rmSync(cluster.dir, { recursive: true, force: true });
  }
}

function onExit(): void {
  killAllSync();
}

function onSignal(signal: NodeJS.Signals): void {
  killAllSync();
  removeExitHandlers();
  // Adding a listener disabled Node's default "die on signal"; restore it unless someone else
  // (e.g. the test runner) also handles the signal and so decides what happens next.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function removeExitHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('exit', onExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

/**
 * A test process that was itself SIGKILLed never ran its exit hook, leaving servers
 * holding ports and disk. Reap those left by owners that are gone.
 */
function reapOrphans(): void {
  const tmp = os.tmpdir();
  let entries: string[];
  try {
    entries = fs.readdirSync(tmp).filter((e) => e.startsWith(DIR_PREFIX));
  } catch {
    return;
  }
  for (const entry of entries) {
    const dir = path.join(tmp, entry);
    const owner = ownerPid(dir, entry);
    if (owner === undefined || owner === process.pid || isAlive(owner)) continue;
    let files: string[] = [];
    try {
      files = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const f of files.filter((f) => f.endsWith('.pid') && f !== 'owner.pid')) {
      const pid = Number.parseInt(readOr(path.join(dir, f), ''), 10);
      // The pid may have been reused since; only kill a process still running one of this dir's configs.
      if (pid > 0 && (commandLineOf(pid) ?? '').includes(dir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function ownerPid(dir: string, entry: string): number | undefined {
  const fromFile = Number.parseInt(readOr(path.join(dir, 'owner.pid'), ''), 10);
  if (fromFile > 0) return fromFile;
  const fromName = Number.parseInt(entry.slice(DIR_PREFIX.length), 10);
  return fromName > 0 ? fromName : undefined;
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}
