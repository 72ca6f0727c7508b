/**
 * The bus of `halyard up`: a local nats-server cluster (3 nodes, or 1) with JetStream on
 * fixed loopback ports, its data under `<data-dir>/nats/n<i>` so a restart finds it
 * again; started, connected to, provisioned with Halyard's streams and buckets, watched
 * for crashes and stopped. It is locked as deploy/nats describes (TLS, one nkey per
 * role) with a CA, certificates and nkeys made once into `<data-dir>/bus`; `--insecure`
 * runs it open, for debugging. The servers run in their own process groups, so a Ctrl-C in
 * the terminal reaches only `up`, which closes its connection before it stops them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Bus, BusConfigError } from '../../../bus/index.js';
import { BusEnv, busOptions, busSettings } from '../../common/bus-settings.js';
import { commandLineOf, isAlive } from '../../common/proc.js';
import { sleep } from '../../common/sleep.js';
import { stopProcess } from '../../common/stop-process.js';
import { launcherRole, makeBusBundle } from '../certs-bundle.js';
import {
  DEFAULT_STOP_TIMEOUT_MS,
  LocalNats,
  type LocalNatsNode,
  type NatsNodeSpec,
} from '../local-nats.js';
import { CliLogIds as Ids, type Logger } from '../log.js';
import { MESH_HOST_ID } from '../mesh.js';
import { UpError } from './errors.js';
import { PortOffsets } from './ports.js';
import { describeExit, supervise } from './supervise.js';

const CLUSTER_NAME = 'halyard-local';
const LAYOUT_FILE = 'layout.json';
/** A restart with existing data needs a meta leader election from the stored state (~5 s). */
const READY_TIMEOUT_MS = 60_000;
/** Stream leaders are elected after the meta leader: provisioning may wait for them. */
const PROVISION_TIMEOUT_MS = 30_000;
const BUS_CLOSE_TIMEOUT_MS = 5_000;

/** The nodes of a local bus: n<i> with ports base+i, base+2000+i, base+4000+i. */
function nodeLayout(dataDir: string, basePort: number, size: number): NatsNodeSpec[] {
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

/** Where a locked local bus keeps its CA, certificates and nkeys. */
export const busSecretsDir = (dataDir: string) => path.join(dataDir, 'bus');

/** The local bus's servers (not started yet); locked unless `insecure`. */
export function localNats(
  dataDir: string,
  basePort: number,
  size: number,
  insecure = false,
): LocalNats {
  return new LocalNats({
    ...(insecure ? {} : { secureBundle: busSecretsDir(dataDir) }),
    clusterName: CLUSTER_NAME,
    nodes: nodeLayout(dataDir, basePort, size),
    // As deploy/nats: every acknowledged write is on disk (bench/README.md, durability).
    syncInterval: 'always',
    detached: true,
    unref: false,
    // Every failed /healthz probe is a warning in the node's log, which outlives this run.
    pollMs: 250,
  });
}

function busRoleEnvSettings(local: LocalNats): { roles?: string; role?: string } {
  const bundle = local.secureBundle;
  return bundle ? { roles: path.join(bundle, 'roles'), role: 'admin' } : {};
}

/** The nodes' monitoring endpoints. */
export function monitoringUrls(local: LocalNats): string[] {
  return local.nodes.map((n) => `http://127.0.0.1:${n.httpPort}`);
}

/** Single-node and 3-node stores are not interchangeable: refuse to mix them in one data dir. */
export function checkLayout(dataDir: string, size: number): void {
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
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `${JSON.stringify({ nodes: size, cluster: CLUSTER_NAME })}\n`);
  }
}

/**
 * nats-servers of this data dir still running although no `up` holds the lock were left by an
 * `up` that was killed: stop them gracefully so their ports and stores are free again.
 */
export async function stopLeftoverServers(
  nodes: readonly LocalNatsNode[],
  log: Logger,
): Promise<void> {
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

/** Writes the configs, spawns every node and waits until they are a ready cluster. */
export async function startCluster(
  local: LocalNats,
  dataDir: string,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  const size = local.nodes.length;
  log.info(
    { msgId: Ids.upStarting, nodes: size, dataDir, servers: local.servers, bin: local.bin },
    `starting a local Halyard bus: ${size === 1 ? 'one nats-server' : `${size} nats-server nodes`} on 127.0.0.1`,
  );
  if (local.secureBundle) await ensureBusSecrets(local, log);
  else {
    log.warn(
      { msgId: Ids.busInsecure },
      'the bus runs open (--insecure): no TLS, no credentials; anyone who reaches its ports controls the mesh',
    );
  }
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
    signal,
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
}

/** Makes the CA, certificates and role nkeys once; a restart reuses them. */
async function ensureBusSecrets(local: LocalNats, log: Logger): Promise<void> {
  const dir = local.secureBundle as string;
  if (fs.existsSync(path.join(dir, 'ca', 'ca.crt'))) return;
  fs.rmSync(dir, { recursive: true, force: true }); // what an interrupted run left
  await makeBusBundle({
    dir,
    hosts: local.nodes.map((n) => ({ name: n.name, address: '127.0.0.1' })),
    launcherHosts: [MESH_HOST_ID],
  });
  log.info(
    { msgId: Ids.busSecretsMade, dir },
    `bus CA, certificates and role nkeys made in ${dir}`,
  );
}

/**
 * What a process needs in its environment to connect as `role` to the local bus:
 * nothing for an open bus.
 */
export function busRoleEnv(local: LocalNats, role: string): Record<string, string> {
  const bundle = local.secureBundle;
  return bundle ? { [BusEnv.roles]: path.join(bundle, 'roles'), [BusEnv.role]: role } : {};
}

/** The role of the mesh's launcher. */
export const MESH_LAUNCHER_ROLE = launcherRole(MESH_HOST_ID);

/** Connects to the started cluster and provisions Halyard's streams and buckets. */
export async function connectAndProvision(
  local: LocalNats,
  dataDir: string,
  log: Logger,
  signal: AbortSignal,
): Promise<Bus> {
  // `up` is the local bus's admin: it provisions, as `halyard bus provision` would.
  const settings = busSettings.parse({ servers: local.servers, ...busRoleEnvSettings(local) });
  const connecting = Bus.connect(
    busOptions(settings, 'halyard-up', log.child({ component: 'bus' })),
  );
  let bus: Bus;
  try {
    bus = await abortable(connecting, signal);
  } catch (err) {
    // Stopped while connecting: close the connection whenever it completes.
    connecting.then((b) => b.close()).catch(() => {});
    throw err;
  }
  try {
    await provision(bus, dataDir, signal);
  } catch (err) {
    await closeBus(bus, log);
    throw err;
  }
  log.info(
    { msgId: Ids.busProvisioned, replicas: bus.replicas },
    `bus provisioned with ${bus.replicas} replica(s)`,
  );
  return bus;
}

/**
 * `bus.provision()` waits through stream leader elections itself (bus/retry.ts); `up`
 * bounds that wait and turns a refusal into something the user can act on.
 */
async function provision(bus: Bus, dataDir: string, signal: AbortSignal): Promise<void> {
  const deadline = AbortSignal.timeout(PROVISION_TIMEOUT_MS);
  try {
    await abortable(bus.provision(), AbortSignal.any([signal, deadline]));
  } catch (err) {
    if (err instanceof BusConfigError) {
      throw new UpError(
        Ids.startFailed,
        `${err.message} (this is a local bus: stop it and delete ${dataDir} to start empty)`,
      );
    }
    if (deadline.aborted && !signal.aborted) {
      throw new UpError(
        Ids.startFailed,
        `the bus was not provisioned within ${PROVISION_TIMEOUT_MS / 1000} s: its streams have no leader yet; see the nats-server logs under ${dataDir}`,
        { cause: err },
      );
    }
    throw err;
  }
}

/**
 * After start-up, a node that exits on its own is reported and started again
 * (up/supervise.ts) while the others serve; `up` stops when it gives up on a node and
 * none is left running.
 */
export function watchForCrashes(local: LocalNats, log: Logger, stop: AbortController): void {
  for (const n of local.nodes) {
    void supervise(
      {
        name: `nats-server ${n.name}`,
        exited: async () => {
          await n.exited;
          const unexpected = n.expectedUp;
          const detail = describeExit(n.child?.exitCode, n.child?.signalCode);
          if (unexpected) {
            log.error(
              { msgId: Ids.nodeCrashed, node: n.name, detail, log: n.logPath },
              `nats-server ${n.name} exited unexpectedly (${detail}); see ${n.logPath}`,
            );
          }
          return { unexpected, detail };
        },
        restart: () => restartNode(local, n, log, stop.signal),
      },
      {
        log,
        stopping: stop.signal,
        onGiveUp: (message) => {
          n.expectedUp = false;
          if (local.nodes.every((o) => !o.running))
            stop.abort(new UpError(Ids.nodeCrashed, message));
        },
      },
    );
  }
}

/** Spawns one node again and waits until it is back in the cluster (routed, meta leader agreed). */
async function restartNode(
  local: LocalNats,
  n: LocalNatsNode,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  local.spawn(n.index);
  log.info(
    { msgId: Ids.nodeStarting, node: n.name, serverPid: n.child?.pid, log: n.logPath },
    `nats-server ${n.name} starting again on ${n.url}`,
  );
  await local.waitReady(READY_TIMEOUT_MS, { signal });
  log.info(
    { msgId: Ids.clusterReady, node: n.name, metaLeader: await local.metaLeader() },
    `nats-server ${n.name} is back in the cluster`,
  );
}

/** Closes the bus connection, then stops the nodes (SIGTERM, SIGKILL after the timeout). */
export async function stopBus(local: LocalNats, bus: Bus | undefined, log: Logger): Promise<void> {
  if (bus) await closeBus(bus, log);
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

async function closeBus(bus: Bus, log: Logger): Promise<void> {
  const closed = await Promise.race([
    bus.close().then(
      () => true,
      () => true,
    ),
    sleep(BUS_CLOSE_TIMEOUT_MS).then(() => false),
  ]);
  if (!closed) log.warn({ msgId: Ids.forcedStop }, 'the bus connection did not close in time');
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** `promise`, or the signal's reason as soon as it aborts. */
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
