/**
 * `halyard up`: a local Halyard bus. Runs a 3-node (or single) nats-server cluster with
 * JetStream on fixed loopback ports, keeps its data under `<data-dir>/nats/n<i>` so a
 * restart finds it again, provisions Halyard's streams and buckets, prints where
 * everything is, and stops it all in order on Ctrl-C / SIGTERM.
 *
 * One `up` per data dir: `<data-dir>/up.lock` names the running one (pid, ports). A lock
 * whose process is gone is stale and taken over, and nats-servers of this data dir left
 * behind by it (a SIGKILLed `up`) are stopped first. The servers run in their own process
 * groups, so a Ctrl-C in the terminal reaches only `up`, which closes its bus connection
 * before it stops the nodes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AllBuckets, Bus, BusConfigError, EVENTS_STREAM } from '../../bus/index.js';
import { commandLineOf, isAlive, procStat } from '../common/proc.js';
import { sleep } from '../common/sleep.js';
import { stopProcess } from '../common/stop-process.js';
import { demoSecrets, gatewaySecretsEnv } from './demo-secrets.js';
import {
  DEFAULT_STOP_TIMEOUT_MS,
  isPortFree,
  type Jsz,
  LocalNats,
  type LocalNatsNode,
  monitorJson,
  type NatsNodeSpec,
} from './local-nats.js';
import { CliLogIds as Ids, type Logger } from './log.js';
import {
  ADMIN_BASE_OFFSET,
  type Endpoint,
  Mesh,
  MeshAdminOffsets,
  stopLeftoverLauncher,
} from './mesh.js';

export interface UpOptions {
  /** Where node data, configs, logs and the lock live; resolved against the working dir. */
  readonly dataDir: string;
  /** First client port; route ports are +2000, monitoring ports +4000 (4222 → 6222, 8222). */
  readonly basePort: number;
  readonly singleNode: boolean;
  /** Only the bus: no launcher, no mesh. */
  readonly busOnly?: boolean;
  /** The launcher config of the mesh; default deploy/local/mesh.yaml of this checkout. */
  readonly meshConfig?: string;
  /** Where the summary for humans goes. Default stdout. */
  readonly out?: NodeJS.WritableStream;
}

const CLUSTER_NAME = 'halyard-local';
export const PortOffsets = { client: 0, cluster: 2000, monitoring: 4000 } as const;
export const DEFAULT_BASE_PORT = 4222;
export const DEFAULT_DATA_DIR = './.halyard';
const LOCK_FILE = 'up.lock';
const LAYOUT_FILE = 'layout.json';
/** A restart with existing data needs a meta leader election from the stored state (~5 s). */
const READY_TIMEOUT_MS = 60_000;
/** Stream leaders are elected after the meta leader: provisioning may need a few retries. */
const PROVISION_TIMEOUT_MS = 30_000;
const BUS_CLOSE_TIMEOUT_MS = 5_000;
/** Every process of the mesh READY: discovery, gateways, cache and the greeters. */
const MESH_READY_TIMEOUT_MS = 120_000;
/** The launcher stops its children in order, each within its stop timeout. */
const MESH_STOP_TIMEOUT_MS = 45_000;
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A problem the user can fix; reported as one error line, exit code 1. */
class UpError extends Error {
  constructor(
    readonly msgId: string,
    message: string,
  ) {
    super(message);
  }
}

/** Why `up` is stopping when it was asked to (a signal): exit code 0. */
class StopRequested extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`stopping on ${signal}`);
  }
}

/** The nodes of a local bus: n<i> with ports base+i, base+2000+i, base+4000+i. */
export function nodeLayout(dataDir: string, basePort: number, size: number): NatsNodeSpec[] {
  return Array.from({ length: size }, (_, i) => {
    const dir = path.join(dataDir, 'nats', `n${i}`);
    return {
      name: `n${i}`,
      port: basePort + PortOffsets.client + i,
      clusterPort: basePort + PortOffsets.cluster + i,
      httpPort: basePort + PortOffsets.monitoring + i,
      confPath: path.join(dir, 'nats.conf'),
      logPath: path.join(dir, 'nats.log'),
      pidPath: path.join(dir, 'nats.pid'),
      storeDir: dir,
    };
  });
}

/** Every port the layout binds, with what it is for. */
function portsOf(specs: readonly NatsNodeSpec[]): { port: number; what: string }[] {
  return specs.flatMap((s) => [
    { port: s.port, what: `${s.name} client` },
    ...(specs.length > 1 ? [{ port: s.clusterPort, what: `${s.name} cluster` }] : []),
    { port: s.httpPort, what: `${s.name} monitoring` },
  ]);
}

export async function up(options: UpOptions, log: Logger): Promise<number> {
  const out = options.out ?? process.stdout;
  const dataDir = path.resolve(options.dataDir);
  const size = options.singleNode ? 1 : 3;
  const specs = nodeLayout(dataDir, options.basePort, size);
  const local = new LocalNats({
    clusterName: CLUSTER_NAME,
    nodes: specs,
    bin: natsServerBin(),
    detached: true,
    unref: false,
    // Every failed /healthz probe is a warning in the node's log, which outlives this run.
    pollMs: 250,
  });
  const lock = new UpLock(path.join(dataDir, LOCK_FILE), log);
  const monitoring = local.nodes.map((n) => `http://127.0.0.1:${n.httpPort}`);

  const stop = new AbortController();
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      log.info({ msgId: Ids.stopping, signal }, `${signal}: stopping`);
      stop.abort(new StopRequested(signal));
      return;
    }
    log.warn(
      { msgId: Ids.forcedStop, signal },
      `${signal} again: killing the mesh and the nats-server nodes`,
    );
    mesh?.killAllSync();
    local.killAllSync();
    lock.release();
    process.exit(1);
  };
  // Last resort when something exits the process without stopping the nodes.
  const onExit = () => {
    mesh?.killAllSync();
    for (const n of local.nodes) {
      try {
        if (n.pid !== undefined) process.kill(n.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);

  let bus: Bus | undefined;
  let mesh: Mesh | undefined;
  let code = 0;
  try {
    checkPortRange(options.basePort, size);
    fs.mkdirSync(path.join(dataDir, 'nats'), { recursive: true });
    const holder = lock.acquire({
      pid: process.pid,
      startTicks: procStat(process.pid)?.start,
      startedAt: new Date().toISOString(),
      nodes: size,
      servers: local.servers,
      monitoring,
    });
    if (holder) {
      throw new UpError(
        Ids.alreadyRunning,
        `halyard up is already running for ${dataDir} (pid ${holder.pid}, since ${holder.startedAt}; ` +
          `NATS ${holder.servers.join(',')}; monitoring ${holder.monitoring.join(' ')}). ` +
          `Use that one, or stop it first (Ctrl-C in its terminal, or kill ${holder.pid}).`,
      );
    }
    checkLayout(dataDir, size);
    // First the launcher (it stops its children and records that on the bus), then NATS.
    await stopLeftoverLauncher(
      path.join(dataDir, 'logs', 'launcher.log'),
      meshConfigFile(options),
      log,
      MESH_STOP_TIMEOUT_MS,
    );
    await stopLeftovers(local.nodes, log);
    await checkPorts(
      specs,
      options.busOnly ? [] : meshAdminPorts(options.basePort + ADMIN_BASE_OFFSET),
    );

    log.info(
      {
        msgId: Ids.upStarting,
        nodes: size,
        dataDir,
        servers: local.servers,
        bin: local.bin,
      },
      `starting a local Halyard bus: ${size === 1 ? 'one nats-server' : `${size} nats-server nodes`} on 127.0.0.1`,
    );
    local.writeConfigs();
    const t0 = Date.now();
    for (const n of local.nodes) {
      local.spawn(n.index);
      log.info(
        {
          msgId: Ids.nodeStarting,
          node: n.name,
          serverPid: n.child?.pid,
          client: n.port,
          ...(size > 1 ? { cluster: n.clusterPort } : {}),
          monitoring: n.httpPort,
          log: n.logPath,
        },
        `nats-server ${n.name} starting on ${n.url}`,
      );
    }
    await local.waitReady(READY_TIMEOUT_MS, {
      signal: stop.signal,
      onWait: (problem) =>
        log.debug({ msgId: Ids.clusterWaiting, why: problem.message }, 'waiting for the cluster'),
    });
    const metaLeader = size > 1 ? await local.metaLeader() : undefined;
    log.info(
      { msgId: Ids.clusterReady, ms: Date.now() - t0, metaLeader },
      size > 1
        ? `NATS cluster ready: ${size} nodes routed, JetStream meta leader ${metaLeader}`
        : 'NATS server ready',
    );

    const connected = await connectBus(local.servers, log, stop.signal);
    bus = connected;
    await provision(connected, dataDir, log, stop.signal);
    log.info(
      { msgId: Ids.busProvisioned, replicas: connected.replicas },
      `bus provisioned with ${connected.replicas} replica(s)`,
    );

    out.write(summary(local, connected, dataDir, monitoring, await streamsOn(local.node(0))));
    watchForCrashes(local.nodes, log, stop);
    if (!options.busOnly) {
      const adminBase = options.basePort + ADMIN_BASE_OFFSET;
      mesh = new Mesh(
        {
          repoRoot: REPO_ROOT,
          configFile: meshConfigFile(options),
          servers: local.servers,
          adminBase,
          logFile: path.join(dataDir, 'logs', 'launcher.log'),
          // The gateways verify demo tokens (halyard token) and key users with these.
          env: gatewaySecretsEnv(demoSecrets(dataDir)),
          out,
          log,
        },
        connected,
      );
      const started = mesh;
      started.onUnexpectedExit((exitCode, exitSignal) => {
        log.error(
          { msgId: Ids.meshFailed, code: exitCode, signal: exitSignal },
          `the launcher exited (${exitSignal ?? `code ${exitCode}`}); see ${path.join(dataDir, 'logs', 'launcher.log')}`,
        );
        stop.abort(new UpError(Ids.meshFailed, 'the mesh stopped: its launcher exited'));
      });
      await started.start();
      const timeout = AbortSignal.timeout(MESH_READY_TIMEOUT_MS);
      try {
        await started.waitReady(AbortSignal.any([stop.signal, timeout]));
      } catch (err) {
        if (!timeout.aborted || stop.signal.aborted) throw err;
        throw new UpError(
          Ids.meshFailed,
          `the mesh was not ready within ${MESH_READY_TIMEOUT_MS / 1000} s; see ${path.join(dataDir, 'logs', 'launcher.log')}`,
        );
      }
      const status = await started.display();
      out.write(meshSummary(status ? started.endpoints(status) : [], adminBase));
    }
    log.info(
      { msgId: Ids.upReady, readyMs: Math.round(process.uptime() * 1000) },
      'halyard up is ready',
    );
    out.write(`Ready in ${process.uptime().toFixed(1)} s. Ctrl-C to stop.\n`);
    await new Promise<never>((_, reject) => {
      if (stop.signal.aborted) reject(stop.signal.reason);
      stop.signal.addEventListener('abort', () => reject(stop.signal.reason), { once: true });
    });
  } catch (err) {
    if (err instanceof StopRequested) {
      code = 0;
    } else if (err instanceof UpError) {
      log.error({ msgId: err.msgId }, err.message);
      code = 1;
    } else {
      const message = err instanceof Error ? err.message : String(err);
      log.error({ msgId: Ids.startFailed }, `halyard up failed: ${message}`);
      code = 1;
    }
  } finally {
    await mesh?.stop(MESH_STOP_TIMEOUT_MS);
    await shutdown(local, bus, log);
    lock.release();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
    if (local.nodes.some((n) => n.child !== undefined))
      log.info({ msgId: Ids.stopped, code }, 'halyard up stopped');
  }
  return code;
}

interface StreamSummary {
  readonly name: string;
  readonly replicas: number | undefined;
  readonly messages: number | undefined;
}

/** What the server holds after provisioning (so the summary shows streams added to bus/ later too). */
async function streamsOn(n: LocalNatsNode): Promise<StreamSummary[] | undefined> {
  const jsz = (await monitorJson(n.httpPort, '/jsz?accounts=true&streams=true&config=true')) as
    | Jsz
    | undefined;
  if (!jsz?.account_details) return undefined;
  return jsz.account_details
    .flatMap((a) => a.stream_detail ?? [])
    .map((s) => ({ name: s.name, replicas: s.config?.num_replicas, messages: s.state?.messages }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

function summary(
  local: LocalNats,
  bus: Bus,
  dataDir: string,
  monitoring: string[],
  streams: StreamSummary[] | undefined,
): string {
  const size = local.nodes.length;
  const names = size === 1 ? 'n0' : `n{${local.nodes.map((n) => n.index).join(',')}}`;
  const nodeDir = path.join(dataDir, 'nats', names);
  const version = bus.server.version;
  const what =
    size === 1 ? 'a single NATS JetStream server' : `a ${size}-node NATS JetStream cluster`;
  const kv = 'KV_';
  const describe = (s: StreamSummary, name: string) =>
    `${name} (${s.messages ?? '?'} msgs${s.replicas !== bus.replicas ? `, ${s.replicas ?? '?'} replicas` : ''})`;
  // Should the monitoring endpoint not answer, the names Halyard provisions for sure.
  const streamList =
    streams
      ?.filter((s) => !s.name.startsWith(kv))
      .map((s) => describe(s, s.name))
      .join('  ') ?? EVENTS_STREAM;
  const bucketList =
    streams
      ?.filter((s) => s.name.startsWith(kv))
      .map((s) => describe(s, s.name.slice(kv.length)))
      .join('  ') ?? AllBuckets.map((b) => b.name).join('  ');
  const rows: [string, string][] = [
    ['NATS URLs', local.servers.join(',')],
    ['monitoring', monitoring.join('  ')],
    ['replicas', String(bus.replicas)],
    ['streams', streamList],
    ['buckets', bucketList],
    ['data', path.join(nodeDir, 'jetstream')],
    ['logs', path.join(nodeDir, 'nats.log')],
  ];
  const lines = [
    `Halyard bus: ${what}${version ? ` (nats-server ${version})` : ''}`,
    ...rows.map(([k, v]) => `  ${k.padEnd(11)} ${v}`),
  ];
  return `${lines.join('\n')}\n`;
}

function meshConfigFile(options: UpOptions): string {
  return path.resolve(options.meshConfig ?? path.join(REPO_ROOT, 'deploy/local/mesh.yaml'));
}

/** Where the mesh listens and how to try it. */
function meshSummary(endpoints: Endpoint[], adminBase: number): string {
  const titles: Record<string, string> = {
    gateway: 'gateway (gRPC, h2c)',
    discovery: 'discovery (registry gRPC)',
    cache: 'cache (gRPC)',
    greeter: 'greeter (demo, direct)',
  };
  const rows = endpoints.map((e) => {
    const name = `${e.component}-${e.instance}`;
    const admin = e.adminPort ? `  admin http://127.0.0.1:${e.adminPort}/metrics` : '';
    return `  ${name.padEnd(12)} 127.0.0.1:${e.port}${admin}  ${titles[e.component] ?? ''}`;
  });
  const gateways = endpoints.filter((e) => e.component === 'gateway');
  const call = (g: Endpoint | undefined, i: number) =>
    `  ./halyard call 127.0.0.1:${g?.port ?? '<gateway port>'} demo.greeter.v1.Greeter/SayHello --data '{"name":"gateway ${i}"}'`;
  return [
    'Halyard mesh: one launcher (host "local") running deploy/local/mesh.yaml',
    ...rows,
    `  launcher     control 127.0.0.1:${adminBase + MeshAdminOffsets.launcherGrpc}  admin http://127.0.0.1:${adminBase + MeshAdminOffsets.launcherAdmin}/metrics`,
    '',
    'Call the demo through either gateway (another terminal, in this directory):',
    call(gateways[0], 1),
    call(gateways[1], 2),
    `  ./halyard call 127.0.0.1:${gateways[0]?.port ?? '<gateway port>'} demo.greeter.v1.Greeter/StreamHellos --data '{"name":"you","count":3}'`,
    'Watch it:',
    '  ./halyard status',
    '  ./halyard events --follow',
    '',
  ].join('\n');
}

async function connectBus(servers: string[], log: Logger, signal: AbortSignal): Promise<Bus> {
  const connecting = Bus.connect({
    servers,
    name: 'halyard-up',
    logger: log.child({ component: 'bus' }),
  });
  try {
    return await abortable(connecting, signal);
  } catch (err) {
    // Stopped while connecting: close the connection whenever it completes.
    connecting.then((b) => b.close()).catch(() => {});
    throw err;
  }
}

async function provision(bus: Bus, dataDir: string, log: Logger, signal: AbortSignal) {
  const deadline = Date.now() + PROVISION_TIMEOUT_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      await abortable(bus.provision(), signal);
      return;
    } catch (err) {
      if (err instanceof BusConfigError) {
        throw new UpError(
          Ids.startFailed,
          `${err.message} (this is a local bus: stop it and delete ${dataDir} to start empty)`,
        );
      }
      if (signal.aborted || Date.now() >= deadline) throw err;
      // Stream leaders are still being elected after a restart: "no responders", timeouts.
      const delayMs = Math.min(2_000, 100 * 2 ** attempt);
      log.warn(
        { msgId: Ids.provisionRetry, attempt, delayMs, err: (err as Error).message },
        'provisioning the bus failed; retrying',
      );
      await sleep(delayMs, signal);
    }
  }
}

/** Closes the bus connection, then stops the nodes (SIGTERM, SIGKILL after the timeout). */
async function shutdown(local: LocalNats, bus: Bus | undefined, log: Logger): Promise<void> {
  if (bus) {
    const closed = await Promise.race([
      bus.close().then(
        () => true,
        () => true,
      ),
      sleep(BUS_CLOSE_TIMEOUT_MS).then(() => false),
    ]);
    if (!closed) log.warn({ msgId: Ids.forcedStop }, 'the bus connection did not close in time');
  }
  await Promise.all(
    local.nodes.map(async (n) => {
      if (!n.running) return;
      const t0 = Date.now();
      await local.stop(n.index, 'SIGTERM', DEFAULT_STOP_TIMEOUT_MS);
      log.info(
        { msgId: Ids.nodeStopped, node: n.name, ms: Date.now() - t0 },
        `nats-server ${n.name} stopped`,
      );
    }),
  );
}

/** After start-up, a node that exits on its own is reported; with none left, `up` stops. */
function watchForCrashes(
  nodes: readonly LocalNatsNode[],
  log: Logger,
  stop: AbortController,
): void {
  for (const n of nodes) {
    void n.exited.then(() => {
      if (!n.expectedUp) return;
      n.expectedUp = false;
      log.error(
        {
          msgId: Ids.nodeCrashed,
          node: n.name,
          code: n.child?.exitCode,
          signal: n.child?.signalCode,
          log: n.logPath,
        },
        `nats-server ${n.name} exited unexpectedly; see ${n.logPath}`,
      );
      if (nodes.every((o) => !o.running)) {
        stop.abort(new Error('every nats-server node has exited'));
      }
    });
  }
}

function checkPortRange(basePort: number, size: number): void {
  // The mesh's admin ports come after the bus's: base+5000 … base+5040.
  const highest = Math.max(
    basePort + PortOffsets.monitoring + size - 1,
    basePort + ADMIN_BASE_OFFSET + 40,
  );
  if (!Number.isInteger(basePort) || basePort < 1 || highest > 65_535) {
    throw new UpError(
      Ids.badOption,
      `--base-port ${basePort} is out of range: it must leave room for ports up to base+${ADMIN_BASE_OFFSET + 40} (≤ 65535)`,
    );
  }
}

/** The fixed ports of deploy/local/mesh.yaml (its gRPC ports are picked free by the launcher). */
function meshAdminPorts(adminBase: number): { port: number; what: string }[] {
  const o = MeshAdminOffsets;
  return [
    { port: adminBase + o.launcherGrpc, what: 'launcher control' },
    { port: adminBase + o.launcherAdmin, what: 'launcher admin' },
    ...[1, 2].map((i) => ({ port: adminBase + o.discovery + i, what: `discovery-${i} admin` })),
    ...[1, 2].map((i) => ({ port: adminBase + o.gateway + i, what: `gateway-${i} admin` })),
    { port: adminBase + o.cache + 1, what: 'cache-1 admin' },
  ];
}

async function checkPorts(
  specs: readonly NatsNodeSpec[],
  extra: readonly { port: number; what: string }[],
): Promise<void> {
  const ports = [...portsOf(specs), ...extra];
  const free = await Promise.all(ports.map((p) => isPortFree(p.port)));
  const taken = ports.filter((_, i) => !free[i]);
  if (taken.length === 0) return;
  const list = taken.map((p) => `${p.port} (${p.what})`).join(', ');
  throw new UpError(
    Ids.portInUse,
    `port${taken.length > 1 ? 's' : ''} ${list} already in use on 127.0.0.1 by another process ` +
      `(another halyard up with a different --data-dir?). Stop it, or choose other ports with --base-port ` +
      `(\`ss -ltnp 'sport = :${taken[0]?.port}'\` shows who holds it).`,
  );
}

/** Single-node and 3-node stores are not interchangeable: refuse to mix them in one data dir. */
function checkLayout(dataDir: string, size: number): void {
  const file = path.join(dataDir, 'nats', LAYOUT_FILE);
  let recorded: { nodes?: number } | undefined;
  try {
    recorded = JSON.parse(fs.readFileSync(file, 'utf8')) as { nodes?: number };
  } catch {
    recorded = undefined;
  }
  if (recorded?.nodes !== undefined && recorded.nodes !== size) {
    const as = (n: number) => (n === 1 ? 'a single-node bus' : `a ${n}-node cluster`);
    throw new UpError(
      Ids.dataDirMismatch,
      `${dataDir} holds the data of ${as(recorded.nodes)}, not ${as(size)}. ` +
        `Run halyard up ${recorded.nodes === 1 ? 'with' : 'without'} --single-node, use another --data-dir, ` +
        `or delete ${path.join(dataDir, 'nats')} to start empty.`,
    );
  }
  if (recorded === undefined) {
    fs.writeFileSync(file, `${JSON.stringify({ nodes: size, cluster: CLUSTER_NAME })}\n`);
  }
}

/**
 * nats-servers of this data dir still running although no `up` holds the lock were left by an
 * `up` that was killed: stop them gracefully so their ports and stores are free again.
 */
async function stopLeftovers(nodes: readonly LocalNatsNode[], log: Logger): Promise<void> {
  await Promise.all(
    nodes.map(async (n) => {
      const pid = Number.parseInt(readOr(n.pidPath, ''), 10);
      // The pid may have been reused: only a process running this node's config is ours.
      if (!(pid > 0) || !isAlive(pid) || !commandLineOf(pid)?.includes(n.confPath)) return;
      log.warn(
        { msgId: Ids.leftoverServer, node: n.name, serverPid: pid },
        `stopping nats-server ${n.name} (pid ${pid}) left running by an earlier halyard up`,
      );
      await stopProcess({ pid }, 'SIGTERM', DEFAULT_STOP_TIMEOUT_MS);
    }),
  );
}

// ---------------------------------------------------------------------------
// The lock: one `up` per data dir.

interface LockInfo {
  pid: number;
  /** The process's start time (clock ticks since boot), so a reused pid is not mistaken for it. */
  startTicks?: number;
  startedAt: string;
  nodes: number;
  servers: string[];
  monitoring: string[];
}

class UpLock {
  #held = false;

  constructor(
    readonly file: string,
    private readonly log: Logger,
  ) {}

  /** Takes the lock, or returns the live holder. A stale lock (its process is gone) is taken over. */
  acquire(info: LockInfo): LockInfo | undefined {
    for (let attempt = 1; attempt <= 5; attempt++) {
      // Written in full, then linked into place: a reader never sees a half-written lock.
      const tmp = `${this.file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, `${JSON.stringify(info, null, 2)}\n`);
      try {
        linkOrCreate(tmp, this.file);
        this.#held = true;
        return undefined;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      } finally {
        fs.rmSync(tmp, { force: true });
      }
      const holder = readLock(this.file);
      if (holder && holder.pid !== process.pid && lockHolderAlive(holder)) return holder;
      this.log.warn(
        { msgId: Ids.staleLock, file: this.file, holderPid: holder?.pid },
        `taking over ${this.file}: its halyard up${holder ? ` (pid ${holder.pid})` : ''} is gone`,
      );
      fs.rmSync(this.file, { force: true });
    }
    throw new Error(`could not take the lock ${this.file}`);
  }

  release(): void {
    if (!this.#held) return;
    this.#held = false;
    if (readLock(this.file)?.pid === process.pid) fs.rmSync(this.file, { force: true });
  }
}

/** Hard-links `from` to `to` (fails with EEXIST); where links are unsupported, an exclusive create. */
function linkOrCreate(from: string, to: string): void {
  try {
    fs.linkSync(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
    fs.writeFileSync(to, fs.readFileSync(from), { flag: 'wx' });
  }
}

function readLock(file: string): LockInfo | undefined {
  try {
    const info = JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
    return typeof info.pid === 'number' ? info : undefined;
  } catch {
    return undefined;
  }
}

function lockHolderAlive(holder: LockInfo): boolean {
  if (!isAlive(holder.pid)) return false;
  const ticks = procStat(holder.pid)?.start;
  return holder.startTicks === undefined || ticks === undefined || ticks === holder.startTicks;
}

// ---------------------------------------------------------------------------

/** `$NATS_SERVER_BIN`, else `nats-server` on PATH, else Debian's /usr/sbin (not on a user's PATH). */
function natsServerBin(): string {
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

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
