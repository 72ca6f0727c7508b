/**
 * Shared NATS cluster harness for integration tests.
 *
 * Runs real `nats-server` processes (1 or 3 nodes, JetStream with file storage)
 * on loopback, so tests exercise the same replication, leader election and
 * recovery paths as production instead of a mock.
 *
 * Only Node built-ins are used here: readiness and leadership come from the
 * servers' HTTP monitoring endpoints, so the harness does not depend on (or
 * mask bugs in) the client library under test.
 *
 * Behaviour of nats-server 2.9.10 that shaped this file:
 * - `/healthz` returns 503 until the node is connected to a JetStream meta
 *   leader and current with it, so it is the per-node readiness check.
 * - After the meta leader is SIGKILLed, survivors keep answering 200 on
 *   `/healthz` and keep naming the dead node in `/jsz` `meta_cluster.leader`
 *   for a few seconds. "Ready" therefore also requires that all running nodes
 *   agree on a meta leader that is itself one of the running nodes.
 * - Stream leadership (`/jsz?accounts=true&streams=true`,
 *   `stream_detail[].cluster.leader`) is also reported stale by followers
 *   after a kill, and a freshly restarted node briefly reports the leader
 *   recorded in its own store (possibly itself). A leader is accepted only
 *   when exactly one node claims it and every running node agrees.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

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
}

const BIN = process.env.NATS_SERVER_BIN ?? 'nats-server';
const DIR_PREFIX = 'halyard-nats-';
const CLUSTER_NAME = 'halyard-test';
const POLL_MS = 50;
const HTTP_TIMEOUT_MS = 1_000;
const DEFAULT_READY_TIMEOUT_MS = 30_000;
const DEFAULT_LEADER_TIMEOUT_MS = 15_000;
// A graceful JetStream shutdown normally takes well under a second; past this we SIGKILL
// so a wedged server can never hang the test run.
const STOP_TIMEOUT_MS = 10_000;
// Ports are picked before the servers bind them; another process can grab one in between.
const START_ATTEMPTS = 3;

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class Node implements NatsNode {
  readonly url: string;
  readonly confPath: string;
  readonly logPath: string;
  readonly pidPath: string;
  child: ChildProcess | undefined;
  exited: Promise<void> = Promise.resolve();
  /** Set while the harness wants this node up; an exit while set is a crash. */
  expectedUp = false;
  spawnError: Error | undefined;

  constructor(
    readonly index: number,
    readonly name: string,
    readonly port: number,
    readonly httpPort: number,
    readonly clusterPort: number,
    dir: string,
  ) {
    this.url = `nats://127.0.0.1:${port}`;
    this.confPath = path.join(dir, `${name}.conf`);
    this.logPath = path.join(dir, `${name}.log`);
    this.pidPath = path.join(dir, `${name}.pid`);
  }

  get running(): boolean {
    const c = this.child;
    return c !== undefined && c.pid !== undefined && c.exitCode === null && c.signalCode === null;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }
}

export class NatsCluster {
  readonly nodes: readonly NatsNode[];
  readonly servers: string[];
  readonly dir: string;

  readonly #nodes: Node[];
  readonly #jetstream: boolean;
  #closing: Promise<void> | undefined;

  private constructor(dir: string, nodes: Node[], jetstream: boolean) {
    this.dir = dir;
    this.#nodes = nodes;
    this.#jetstream = jetstream;
    this.nodes = nodes;
    this.servers = nodes.map((n) => n.url);
  }

  static async start(opts: ClusterOptions = {}): Promise<NatsCluster> {
    const size = opts.nodes ?? 3;
    const jetstream = opts.jetstream ?? true;
    reapOrphans();
    for (let attempt = 1; ; attempt++) {
      const cluster = await NatsCluster.#create(size, jetstream);
      try {
        await cluster.startAll();
        return cluster;
      } catch (err) {
        const portClash = cluster.#nodes.some((n) =>
          readTail(n.logPath, 50).includes('address already in use'),
        );
        await cluster.close();
        if (!portClash || attempt >= START_ATTEMPTS) throw err;
      }
    }
  }

  static async #create(size: number, jetstream: boolean): Promise<NatsCluster> {
    // Our pid is in the name as well as in owner.pid, so a concurrent reaper can tell
    // the dir is live even before owner.pid has been written.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${DIR_PREFIX}${process.pid}-`));
    fs.writeFileSync(path.join(dir, 'owner.pid'), `${process.pid}\n`);
    const port = await freePorts(size * 3);
    const nodes = Array.from(
      { length: size },
      (_, i) => new Node(i, `n${i}`, port(), port(), port(), dir),
    );
    for (const n of nodes) fs.writeFileSync(n.confPath, renderConfig(n, nodes, dir, jetstream));
    const cluster = new NatsCluster(dir, nodes, jetstream);
    registry.add(cluster);
    installExitHandlers();
    return cluster;
  }

  /** SIGTERM and wait for exit; nats-server shuts JetStream down cleanly, so peers see a graceful departure. */
  async stopNode(i: number): Promise<void> {
    await this.#stop(this.#node(i), 'SIGTERM');
  }

  /** SIGKILL and wait for exit: an abrupt crash, peers have to detect it by timeout. */
  async killNode(i: number): Promise<void> {
    await this.#stop(this.#node(i), 'SIGKILL');
  }

  /**
   * Restart node i with its original config, store and ports. Resolves once the whole
   * cluster is ready again, which needs a quorum of running nodes for a 3-node cluster.
   */
  async startNode(i: number): Promise<void> {
    this.#spawn(this.#node(i));
    await this.waitReady();
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.#nodes.map((n) => this.#stop(n, 'SIGTERM')));
  }

  /** Spawn every stopped node at once (a lone node can never elect a meta leader), then wait. */
  async startAll(): Promise<void> {
    for (const n of this.#nodes) if (!n.running) this.#spawn(n);
    await this.waitReady();
  }

  async waitReady(timeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.#assertNoCrash();
      const problem = await this.#readinessProblem();
      if (problem === undefined) return;
      if (Date.now() >= deadline) {
        throw new Error(
          `NATS cluster not ready after ${timeoutMs} ms: ${problem.message}\n${this.#logs(problem.nodes)}`,
        );
      }
      await delay(POLL_MS);
    }
  }

  /** Index of the node currently leading `stream`; waits (bounded) for an election in progress. */
  async streamLeader(stream: string, timeoutMs = DEFAULT_LEADER_TIMEOUT_MS): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let lastViews = '';
    for (;;) {
      this.#assertNoCrash();
      const running = this.#nodes.filter((n) => n.running);
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
      await delay(POLL_MS);
    }
  }

  /** Kill everything and delete the temp dir. Safe to call repeatedly and concurrently. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all(this.#nodes.map((n) => this.#stop(n, 'SIGKILL')));
      fs.rmSync(this.dir, { recursive: true, force: true });
      registry.delete(this);
      if (registry.size === 0) removeExitHandlers();
    })();
    return this.#closing;
  }

  #node(i: number): Node {
    const n = this.#nodes[i];
    if (n === undefined)
      throw new RangeError(`no node ${i}; cluster has ${this.#nodes.length} node(s)`);
    return n;
  }

  #spawn(n: Node): void {
    if (this.#closing) throw new Error('cluster is closed');
    if (n.running) return;
    // Stray output (e.g. a config error printed before log_file is opened) lands in the same log.
    const out = fs.openSync(n.logPath, 'a');
    try {
      const child = spawn(BIN, ['-c', n.confPath], { stdio: ['ignore', out, out] });
      n.child = child;
      n.expectedUp = true;
      n.spawnError = undefined;
      n.exited = new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.on('error', (err) => {
          // Spawn failures (ENOENT...) emit 'error' without 'exit'.
          n.spawnError = err;
          if (child.pid === undefined) resolve();
        });
      });
      // A forgotten close() must not keep the test process alive; the 'exit' hook reaps children.
      child.unref();
    } finally {
      fs.closeSync(out);
    }
  }

  async #stop(n: Node, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    n.expectedUp = false;
    const child = n.child;
    if (!child || !n.running) return;
    child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS);
    });
    const late = await Promise.race([n.exited.then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) {
      child.kill('SIGKILL');
      await n.exited;
    }
  }

  #assertNoCrash(): void {
    for (const n of this.#nodes) {
      if (!n.expectedUp || n.running) continue;
      // A failed spawn reports its 'error' a tick later; until then there is nothing to say.
      if (n.child?.pid === undefined && !n.spawnError) continue;
      if (n.spawnError) {
        throw new Error(
          `cannot run nats-server (${BIN}): ${n.spawnError.message}. ` +
            'Run deploy/nats/ensure-nats-server.sh and set NATS_SERVER_BIN to the path it prints.',
        );
      }
      const c = n.child;
      throw new Error(
        `nats-server ${n.name} exited unexpectedly (code ${c?.exitCode}, signal ${c?.signalCode})\n${this.#logs([n])}`,
      );
    }
  }

  async #readinessProblem(): Promise<{ message: string; nodes: Node[] } | undefined> {
    const running = this.#nodes.filter((n) => n.running);
    if (running.length === 0) return { message: 'no node is running', nodes: [] };
    const health = await Promise.all(
      running.map(async (n) => ({ n, res: await get(n.httpPort, '/healthz') })),
    );
    const sick = health.find((h) => h.res.status !== 200);
    if (sick)
      return {
        message: `${sick.n.name} /healthz: ${sick.res.status} ${sick.res.body.trim()}`,
        nodes: [sick.n],
      };
    if (this.#nodes.length === 1) return undefined;
    // Without JetStream, /healthz is 200 before routes are up and a message published on one
    // node would not reach subscribers on another.
    const routes = await Promise.all(running.map(async (n) => ({ n, count: await routesOf(n) })));
    const isolated = routes.find((r) => r.count < running.length - 1);
    if (isolated)
      return {
        message: `${isolated.n.name} has ${isolated.count} route(s), expected ${running.length - 1}`,
        nodes: [isolated.n],
      };
    if (!this.#jetstream) return undefined;
    const leaders = await Promise.all(
      running.map(async (n) => ({ n, leader: await metaLeaderSeenBy(n) })),
    );
    const leader = leaders[0]?.leader;
    const runningNames = new Set(running.map((n) => n.name));
    if (
      leader === undefined ||
      !runningNames.has(leader) ||
      leaders.some((l) => l.leader !== leader)
    ) {
      const views = leaders.map((l) => `${l.n.name}: ${l.leader ?? 'none'}`).join(', ');
      return {
        message: `no agreed JetStream meta leader among running nodes (leader seen by ${views})`,
        nodes: running,
      };
    }
    return undefined;
  }

  #logs(nodes: Node[]): string {
    return nodes.map((n) => `--- tail of ${n.logPath} ---\n${readTail(n.logPath, 30)}`).join('\n');
  }
}

function renderConfig(n: Node, all: Node[], dir: string, jetstream: boolean): string {
  const q = JSON.stringify; // NATS config accepts JSON-style quoted strings, which keeps odd tmpdir paths safe.
  const lines = [
    `server_name: ${n.name}`,
    `listen: "127.0.0.1:${n.port}"`,
    `http: "127.0.0.1:${n.httpPort}"`,
    `log_file: ${q(n.logPath)}`,
    `pid_file: ${q(n.pidPath)}`,
  ];
  if (jetstream) {
    const store = path.join(dir, n.name, 'js');
    lines.push(
      `jetstream { store_dir: ${q(store)}, max_memory_store: 64MB, max_file_store: 512MB }`,
    );
  }
  if (all.length > 1) {
    const routes = all.filter((o) => o !== n).map((o) => q(`nats://127.0.0.1:${o.clusterPort}`));
    lines.push(
      `cluster { name: ${CLUSTER_NAME}, listen: "127.0.0.1:${n.clusterPort}", routes: [${routes.join(', ')}] }`,
    );
  }
  return `${lines.join('\n')}\n`;
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

/** Plain HTTP GET without keep-alive; any failure becomes status 0 so callers just keep polling. */
function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: urlPath, agent: false, timeout: HTTP_TIMEOUT_MS },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', (err) => resolve({ status: 0, body: String(err) }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ status: 0, body: String(err) }));
  });
}

async function getJson(port: number, urlPath: string): Promise<unknown> {
  const res = await get(port, urlPath);
  if (res.status !== 200) return undefined;
  try {
    return JSON.parse(res.body);
  } catch {
    return undefined;
  }
}

interface Jsz {
  meta_cluster?: { leader?: string };
  account_details?: { stream_detail?: { name: string; cluster?: { leader?: string } }[] }[];
}

async function routesOf(n: Node): Promise<number> {
  const routez = (await getJson(n.httpPort, '/routez')) as { num_routes?: number } | undefined;
  return routez?.num_routes ?? 0;
}

async function metaLeaderSeenBy(n: Node): Promise<string | undefined> {
  const jsz = (await getJson(n.httpPort, '/jsz')) as Jsz | undefined;
  return jsz?.meta_cluster?.leader || undefined;
}

async function streamLeaderSeenBy(n: Node, stream: string): Promise<string | undefined> {
  // 2.9.10 already includes account_details for streams=true; accounts=true keeps newer servers the same.
  const jsz = (await getJson(n.httpPort, '/jsz?accounts=true&streams=true')) as Jsz | undefined;
  for (const acc of jsz?.account_details ?? []) {
    for (const s of acc.stream_detail ?? []) {
      if (s.name === stream) return s.cluster?.leader || undefined;
    }
  }
  return undefined;
}

function readTail(file: string, lines: number): string {
  try {
    // Our own /healthz polling makes the server log a warning per failed probe; those would
    // push the lines that explain the failure out of the tail (the error message has the status).
    return fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.includes('Healthcheck failed'))
      .slice(-lines)
      .join('\n');
  } catch {
    return '(no log)';
  }
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
      if (pid > 0 && readOr(`/proc/${pid}/cmdline`, '').includes(dir)) {
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

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}
