/**
 * Runs local `nats-server` nodes from a description: writes each node's config,
 * spawns the servers, waits until the cluster is healthy and stops them. The
 * shared mechanism of `halyard up` (a local bus) and of the integration-test
 * harness (`test/support/nats-cluster.ts`), so both run the servers the same way.
 *
 * Only Node built-ins are used here: readiness and leadership come from the
 * servers' HTTP monitoring endpoints, so this module does not depend on (or
 * mask bugs in) the NATS client library.
 *
 * Behaviour of nats-server that shaped this file (seen on 2.9.10; the same checks hold
 * on 2.15.2, which the test suite runs):
 * - `/healthz` returns 503 until the node is connected to a JetStream meta
 *   leader and current with it, so it is the per-node readiness check.
 * - After the meta leader is SIGKILLed, survivors keep answering 200 on
 *   `/healthz` and keep naming the dead node in `/jsz` `meta_cluster.leader`
 *   for a few seconds. "Ready" therefore also requires that all running nodes
 *   agree on a meta leader that is itself one of the running nodes.
 * - Without JetStream, `/healthz` is 200 before the routes are up, so a
 *   multi-node cluster is ready only when every running node has a route to
 *   every other running node.
 * - SIGTERM shuts JetStream down cleanly and hands stream leadership over
 *   (peers see a graceful departure); it can take a moment, so a stop waits,
 *   then SIGKILLs a server that has not exited within the timeout.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sleep } from '../common/sleep.js';
import { signalProcess, stopProcess } from '../common/stop-process.js';
import { writeHostConf } from './certs-bundle.js';
import { type Jsz, monitorGet, monitorJson } from './nats-monitor.js';

/** One node: its name, ports and files. */
export interface NatsNodeSpec {
  /** `server_name`, unique within the cluster, e.g. `n0`. */
  readonly name: string;
  /** Client port on 127.0.0.1. */
  readonly port: number;
  /** Monitoring (HTTP) port on 127.0.0.1. */
  readonly httpPort: number;
  /** Route port on 127.0.0.1; used only when the cluster has more than one node. */
  readonly clusterPort: number;
  readonly confPath: string;
  readonly logPath: string;
  readonly pidPath: string;
  /** JetStream `store_dir` (file storage); the server keeps its data in `<storeDir>/jetstream`. */
  readonly storeDir: string;
}

export interface LocalNatsOptions {
  /** The cluster block's `name`; all nodes share it. */
  readonly clusterName: string;
  readonly nodes: readonly NatsNodeSpec[];
  /** Enable JetStream with file storage. Default true. */
  readonly jetstream?: boolean;
  /** JetStream limits in NATS size syntax (e.g. `512MB`); the server's defaults when absent. */
  readonly maxMemoryStore?: string;
  readonly maxFileStore?: string;
  /**
   * JetStream `sync_interval`: `always` fsyncs every write; absent, the server's
   * default (every 2 minutes, plus on every RAFT snapshot).
   */
  readonly syncInterval?: string;
  /**
   * Runs the locked bus: deploy/nats/nats.conf from the directory `halyard certs` wrote
   * (see certs-bundle.ts), whose hosts are named as the nodes: TLS on client and
   * route connections, role users. Absent, the servers run open on loopback.
   */
  readonly secureBundle?: string;
  /** The nats-server executable. Default: natsServerBin(). */
  readonly bin?: string;
  /**
   * Run each server in its own process group, so a Ctrl-C in the terminal reaches only the
   * parent, which then stops the nodes in order. Default false.
   */
  readonly detached?: boolean;
  /** Let the parent process exit while servers run (default true); the parent must stop them. */
  readonly unref?: boolean;
  /**
   * How often waitReady() polls (default 50 ms). Each failed `/healthz` probe is a warning
   * line in the server's log; a long-lived log may prefer fewer of them.
   */
  readonly pollMs?: number;
}

export interface ReadinessProblem {
  readonly message: string;
  /** Nodes whose logs explain the problem. */
  readonly nodes: readonly LocalNatsNode[];
}

export interface WaitReadyOptions {
  /** Stops waiting; the wait rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  /** Called whenever the reason for not being ready changes, for progress output. */
  readonly onWait?: (problem: ReadinessProblem) => void;
}

const POLL_MS = 50;
export const DEFAULT_READY_TIMEOUT_MS = 30_000;
/**
 * A graceful JetStream shutdown normally takes well under a second; past this a stop
 * SIGKILLs, so a wedged server can never hang its caller.
 */
export const DEFAULT_STOP_TIMEOUT_MS = 10_000;

/** A node and the server process currently running it (if any). */
export class LocalNatsNode {
  readonly url: string;
  child: ChildProcess | undefined;
  /** Resolves when the current process has exited (or could not be spawned). */
  exited: Promise<void> = Promise.resolve();
  /** Set while the owner wants this node up; an exit while set is a crash. */
  expectedUp = false;
  spawnError: Error | undefined;

  constructor(
    readonly index: number,
    readonly spec: NatsNodeSpec,
  ) {
    this.url = `nats://127.0.0.1:${spec.port}`;
  }

  get name(): string {
    return this.spec.name;
  }
  get port(): number {
    return this.spec.port;
  }
  get httpPort(): number {
    return this.spec.httpPort;
  }
  get clusterPort(): number {
    return this.spec.clusterPort;
  }
  get confPath(): string {
    return this.spec.confPath;
  }
  get logPath(): string {
    return this.spec.logPath;
  }
  get pidPath(): string {
    return this.spec.pidPath;
  }

  get running(): boolean {
    const c = this.child;
    return c !== undefined && c.pid !== undefined && c.exitCode === null && c.signalCode === null;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }
}

/** A set of local nats-server nodes forming one cluster (or a single server). */
export class LocalNats {
  readonly nodes: readonly LocalNatsNode[];
  readonly servers: string[];
  readonly bin: string;
  readonly jetstream: boolean;

  readonly #options: LocalNatsOptions;

  constructor(options: LocalNatsOptions) {
    if (options.nodes.length === 0) throw new RangeError('a NATS cluster needs at least one node');
    this.#options = options;
    this.bin = options.bin ?? natsServerBin();
    this.jetstream = options.jetstream ?? true;
    this.nodes = options.nodes.map((spec, i) => new LocalNatsNode(i, spec));
    this.servers = this.nodes.map((n) => n.url);
  }

  node(i: number): LocalNatsNode {
    const n = this.nodes[i];
    if (n === undefined)
      throw new RangeError(`no node ${i}; cluster has ${this.nodes.length} node(s)`);
    return n;
  }

  /** The `halyard certs` directory of a locked bus; undefined for an open one. */
  get secureBundle(): string | undefined {
    return this.#options.secureBundle;
  }

  /** The file a node's server is started with. */
  configFile(n: LocalNatsNode): string {
    const bundle = this.#options.secureBundle;
    return bundle ? path.join(bundle, 'hosts', n.name, 'nats.conf') : n.confPath;
  }

  /** A locked node's host.conf and routes.conf, which deploy/nats/nats.conf includes. */
  #writeHostConf(n: LocalNatsNode, bundle: string): void {
    const q = JSON.stringify;
    const hostDir = path.join(bundle, 'hosts', n.name);
    writeHostConf(hostDir, {
      name: n.name,
      cluster: this.#options.clusterName,
      clientListen: `127.0.0.1:${n.port}`,
      monitorListen: `127.0.0.1:${n.httpPort}`,
      routeListen: `127.0.0.1:${n.clusterPort}`,
      routes: this.nodes
        .filter((o) => o !== n)
        .map((o) => `nats-route://127.0.0.1:${o.clusterPort}`),
      storeDir: n.spec.storeDir,
      caFile: path.join(hostDir, 'ca.crt'),
      certFile: path.join(hostDir, 'server.crt'),
      keyFile: path.join(hostDir, 'server.key'),
      extra: [`log_file: ${q(n.logPath)}`, `pid_file: ${q(n.pidPath)}`],
    });
  }

  /** The config file of one node, as written by writeConfigs(). */
  renderConfig(n: LocalNatsNode): string {
    const q = JSON.stringify; // NATS config accepts JSON-style quoted strings, which keeps odd paths safe.
    const lines = [
      `server_name: ${n.name}`,
      `listen: "127.0.0.1:${n.port}"`,
      `http: "127.0.0.1:${n.httpPort}"`,
      `log_file: ${q(n.logPath)}`,
      `pid_file: ${q(n.pidPath)}`,
    ];
    if (this.jetstream) {
      const { maxMemoryStore, maxFileStore, syncInterval } = this.#options;
      const fields = [`store_dir: ${q(n.spec.storeDir)}`];
      if (syncInterval) fields.push(`sync_interval: ${syncInterval}`);
      if (maxMemoryStore) fields.push(`max_memory_store: ${maxMemoryStore}`);
      if (maxFileStore) fields.push(`max_file_store: ${maxFileStore}`);
      lines.push(`jetstream { ${fields.join(', ')} }`);
    }
    if (this.nodes.length > 1) {
      const routes = this.nodes
        .filter((o) => o !== n)
        .map((o) => q(`nats://127.0.0.1:${o.clusterPort}`));
      lines.push(
        `cluster { name: ${this.#options.clusterName}, listen: "127.0.0.1:${n.clusterPort}", routes: [${routes.join(', ')}] }`,
      );
    }
    return `${lines.join('\n')}\n`;
  }

  /** Writes every node's config, creating the directories its files live in. */
  writeConfigs(): void {
    for (const n of this.nodes) {
      for (const file of [n.confPath, n.logPath, n.pidPath]) {
        fs.mkdirSync(path.dirname(file), { recursive: true });
      }
      const bundle = this.#options.secureBundle;
      if (bundle) this.#writeHostConf(n, bundle);
      else fs.writeFileSync(n.confPath, this.renderConfig(n));
    }
  }

  /** Spawns node i's server unless it runs already. Returns at once; see waitReady(). */
  spawn(i: number): void {
    const n = this.node(i);
    if (n.running) return;
    // Stray output (e.g. a config error printed before log_file is opened) lands in the same log.
    const out = fs.openSync(n.logPath, 'a');
    try {
      const child = spawn(this.bin, ['-c', this.configFile(n)], {
        stdio: ['ignore', out, out],
        detached: this.#options.detached ?? false,
      });
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
      // A forgotten stop must not keep the parent alive; its owner reaps the servers on exit.
      if (this.#options.unref ?? true) child.unref();
    } finally {
      fs.closeSync(out);
    }
  }

  /**
   * Sends `signal` to node i and waits for its exit; SIGKILLs it if it is still running after
   * `timeoutMs`. The node is no longer expected up, so its exit is not a crash.
   */
  async stop(
    i: number,
    signal: 'SIGTERM' | 'SIGINT' | 'SIGKILL' = 'SIGTERM',
    timeoutMs = DEFAULT_STOP_TIMEOUT_MS,
  ): Promise<void> {
    const n = this.node(i);
    n.expectedUp = false;
    const pid = n.pid;
    if (pid === undefined) return;
    await stopProcess({ pid, exited: n.exited }, signal, timeoutMs);
  }

  async stopAll(
    signal: 'SIGTERM' | 'SIGINT' | 'SIGKILL' = 'SIGTERM',
    timeoutMs = DEFAULT_STOP_TIMEOUT_MS,
  ): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.stop(n.index, signal, timeoutMs)));
  }

  /** SIGKILLs every running server without waiting: for process-exit hooks. */
  killAllSync(): void {
    for (const n of this.nodes) {
      n.expectedUp = false;
      if (n.pid !== undefined) signalProcess({ pid: n.pid }, 'SIGKILL');
    }
  }

  /** An error describing a node that should be up but is not (crashed or could not be spawned). */
  crashError(): Error | undefined {
    for (const n of this.nodes) {
      if (!n.expectedUp || n.running) continue;
      // A failed spawn reports its 'error' a tick later; until then there is nothing to say.
      if (n.child?.pid === undefined && !n.spawnError) continue;
      if (n.spawnError) {
        return new Error(
          `cannot run nats-server (${this.bin}): ${n.spawnError.message}. ` +
            'Run deploy/nats/ensure-nats-server.sh and set NATS_SERVER_BIN to the path it prints.',
        );
      }
      const c = n.child;
      return new Error(
        `nats-server ${n.name} exited unexpectedly (code ${c?.exitCode}, signal ${c?.signalCode})\n${this.logs([n])}`,
      );
    }
    return undefined;
  }

  /**
   * Waits until every running node is healthy, routed to the others and agrees on a running
   * JetStream meta leader. Throws at once when a node that should be up has exited.
   */
  async waitReady(
    timeoutMs = DEFAULT_READY_TIMEOUT_MS,
    options: WaitReadyOptions = {},
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastMessage: string | undefined;
    for (;;) {
      options.signal?.throwIfAborted();
      const crash = this.crashError();
      if (crash) throw crash;
      const problem = await this.readinessProblem();
      if (problem === undefined) return;
      if (problem.message !== lastMessage) {
        lastMessage = problem.message;
        options.onWait?.(problem);
      }
      if (Date.now() >= deadline) {
        throw new Error(
          `NATS cluster not ready after ${timeoutMs} ms: ${problem.message}\n${this.logs(problem.nodes)}`,
        );
      }
      await sleep(this.#options.pollMs ?? POLL_MS, options.signal);
    }
  }

  /** Why the running nodes are not (yet) a ready cluster; undefined when they are. */
  async readinessProblem(): Promise<ReadinessProblem | undefined> {
    const running = this.nodes.filter((n) => n.running);
    if (running.length === 0) return { message: 'no node is running', nodes: [] };
    const health = await Promise.all(
      running.map(async (n) => ({ n, res: await monitorGet(n.httpPort, '/healthz') })),
    );
    const sick = health.find((h) => h.res.status !== 200);
    if (sick)
      return {
        message: `${sick.n.name} /healthz: ${sick.res.status} ${sick.res.body.trim()}`,
        nodes: [sick.n],
      };
    if (this.nodes.length === 1) return undefined;
    const routes = await Promise.all(running.map(async (n) => ({ n, count: await routesOf(n) })));
    const isolated = routes.find((r) => r.count < running.length - 1);
    if (isolated)
      return {
        message: `${isolated.n.name} has ${isolated.count} route(s), expected ${running.length - 1}`,
        nodes: [isolated.n],
      };
    if (!this.jetstream) return undefined;
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

  /** The JetStream meta leader all running nodes agree on, if any (undefined on a single server). */
  async metaLeader(): Promise<string | undefined> {
    const running = this.nodes.filter((n) => n.running);
    const seen = await Promise.all(running.map((n) => metaLeaderSeenBy(n)));
    const first = seen[0];
    return first !== undefined && seen.every((l) => l === first) ? first : undefined;
  }

  /** The tails of the nodes' logs, for error messages. */
  logs(nodes: readonly LocalNatsNode[]): string {
    return nodes.map((n) => `--- tail of ${n.logPath} ---\n${readTail(n.logPath, 30)}`).join('\n');
  }
}

// ---------------------------------------------------------------------------
// What the nodes' monitoring endpoints say.

async function routesOf(n: LocalNatsNode): Promise<number> {
  const routez = (await monitorJson(n.httpPort, '/routez')) as { num_routes?: number } | undefined;
  return routez?.num_routes ?? 0;
}

async function metaLeaderSeenBy(n: LocalNatsNode): Promise<string | undefined> {
  const jsz = (await monitorJson(n.httpPort, '/jsz')) as Jsz | undefined;
  return jsz?.meta_cluster?.leader || undefined;
}

// ---------------------------------------------------------------------------
// Files and processes.

/** The last `lines` non-empty lines of a server log, without our own health probes' noise. */
export function readTail(file: string, lines: number): string {
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

/** `$NATS_SERVER_BIN`, else `nats-server` on PATH, else Debian's /usr/sbin (not on a user's PATH). */
export function natsServerBin(): string {
  if (process.env.NATS_SERVER_BIN) return process.env.NATS_SERVER_BIN;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, 'nats-server'))) return path.join(dir, 'nats-server');
  }
  return isExecutable('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server';
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}
