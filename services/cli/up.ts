/**
 * `halyard up`: a local Halyard mesh in the foreground. In order: take the data dir's
 * lock (up/lock.ts), stop what a killed earlier `up` left running, check the fixed ports
 * (up/ports.ts), start the NATS cluster, connect and provision the bus (up/bus.ts), print
 * where it is (up/summary.ts), then run deploy/local/mesh.yaml with one launcher
 * (mesh.ts) until Ctrl-C / SIGTERM, and stop it all in reverse order. A second signal
 * kills everything at once. Meanwhile a launcher or nats-server that exits on its own is
 * started again (up/supervise.ts); the restarted launcher adopts the running mesh.
 */
import * as path from 'node:path';
import type { Bus } from '../../bus/index.js';
import { REPO_ROOT } from '../common/repo-root.js';
import { type Console, startConsole } from '../console/server.js';
import {
  demoSecrets,
  gatewaySecretsEnv,
  registryCredentials,
  registryCredentialsEnv,
} from './demo-secrets.js';
import type { LocalNats } from './local-nats.js';
import { CliLogIds as Ids, type Logger } from './log.js';
import { ADMIN_BASE_OFFSET, Mesh, MeshAdminOffsets, stopLeftoverLauncher } from './mesh.js';
import {
  busRoleEnv,
  checkLayout,
  connectAndProvision,
  localNats,
  MESH_LAUNCHER_ROLE,
  monitoringUrls,
  startCluster,
  stopBus,
  stopLeftoverServers,
  watchForCrashes,
} from './up/bus.js';
import { StopRequested, UpError } from './up/errors.js';
import { UpLock } from './up/lock.js';
import { publishMeshFile } from './up/mesh-config.js';
import { busPorts, checkPortRange, checkPortsFree, meshAdminPorts } from './up/ports.js';
import { busSummary, meshSummary, readyLine } from './up/summary.js';
import { describeExit, supervise } from './up/supervise.js';

export interface UpOptions {
  /** Where node data, configs, logs and the lock live; resolved against the working dir. */
  readonly dataDir: string;
  /** First client port; route ports are +2000, monitoring ports +4000 (4222 → 6222, 8222). */
  readonly basePort: number;
  readonly singleNode: boolean;
  /** Only the bus: no launcher, no mesh. */
  readonly busOnly?: boolean;
  /** A plaintext bus without credentials, for debugging; by default it is locked. */
  readonly insecure?: boolean;
  /** The launcher config of the mesh; default deploy/local/mesh.yaml of this checkout. */
  readonly meshConfig?: string;
  /** Where the summary for humans goes. Default stdout. */
  readonly out?: NodeJS.WritableStream;
}

/** Every process of the mesh READY: discovery, gateways, cache and the greeters. */
const MESH_READY_TIMEOUT_MS = 120_000;
/** The launcher stops its children in order, each within its stop timeout. */
const MESH_STOP_TIMEOUT_MS = 45_000;

/** Runs until stopped; returns the exit code (0 after Ctrl-C, 1 after a failure). */
export async function up(options: UpOptions, log: Logger): Promise<number> {
  const out = options.out ?? process.stdout;
  const dataDir = path.resolve(options.dataDir);
  const size = options.singleNode ? 1 : 3;
  const meshConfig = path.resolve(
    options.meshConfig ?? path.join(REPO_ROOT, 'deploy/local/mesh.yaml'),
  );
  const launcherLog = path.join(dataDir, 'logs', 'launcher.log');
  const local = localNats(dataDir, options.basePort, size, options.insecure);
  const lock = new UpLock(dataDir, log);
  const stop = new AbortController();
  let bus: Bus | undefined;
  let mesh: Mesh | undefined;
  let web: Console | undefined;
  const stopHandlers = onStopSignals(log, stop, () => {
    mesh?.killAllSync();
    local.killAllSync();
    lock.release();
  });
  // Last resort when something exits the process without stopping the nodes.
  const onExit = () => {
    mesh?.killAllSync();
    terminateNodes(local);
  };
  process.on('exit', onExit);

  let code = 0;
  try {
    checkPortRange(options.basePort, size);
    lock.acquire({ nodes: size, servers: local.servers, monitoring: monitoringUrls(local) });
    checkLayout(dataDir, size);
    // First the launcher (it stops its children and records that on the bus), then NATS.
    await stopLeftoverLauncher(launcherLog, meshConfig, log, MESH_STOP_TIMEOUT_MS);
    await stopLeftoverServers(local.nodes, log);
    await checkPortsFree([
      ...busPorts(local.nodes.map((n) => n.spec)),
      ...(options.busOnly ? [] : meshAdminPorts(options.basePort)),
    ]);

    await startCluster(local, dataDir, log, stop.signal);
    bus = await connectAndProvision(local, dataDir, log, stop.signal);
    out.write(await busSummary(local, bus, dataDir));
    watchForCrashes(local, log, stop);

    if (!options.busOnly) {
      const published = await publishMeshFile(bus, meshConfig, log);
      out.write(
        `Mesh configuration: version ${published.version} on the bus (${published.published ? 'published from' : 'the same as'} ${path.relative(process.cwd(), meshConfig) || meshConfig})\n\n`,
      );
      const adminBase = options.basePort + ADMIN_BASE_OFFSET;
      mesh = new Mesh(
        {
          repoRoot: REPO_ROOT,
          configFile: meshConfig,
          servers: local.servers,
          adminBase,
          logFile: launcherLog,
          // The gateways verify demo tokens (halyard token) and key users with these;
          // the greeters register with discovery with the registry credentials.
          env: {
            ...gatewaySecretsEnv(demoSecrets(dataDir)),
            ...registryCredentialsEnv(registryCredentials(dataDir)),
            // The launcher's own role; each component's mesh.yaml entry names its role.
            ...busRoleEnv(local, MESH_LAUNCHER_ROLE),
          },
          out,
          log,
        },
        bus,
      );
      await startMesh(mesh, launcherLog, log, stop);
      const status = await mesh.display();
      out.write(meshSummary(status ? mesh.endpoints(status) : [], adminBase));
      // Loopback only: anyone on this machine may look, nobody else can reach it.
      web = await startConsole({
        bus,
        listen: `127.0.0.1:${adminBase + MeshAdminOffsets.console}`,
        logger: log,
      });
      out.write(`Console: ${web.url}\n\n`);
    }

    log.info(
      { msgId: Ids.upReady, readyMs: Math.round(process.uptime() * 1000) },
      'halyard up is ready',
    );
    out.write(readyLine());
    await untilAborted(stop.signal);
  } catch (err) {
    code = exitCodeOf(err, log);
  } finally {
    await web?.close();
    await mesh?.stop(MESH_STOP_TIMEOUT_MS);
    await stopBus(local, bus, log);
    lock.release();
    stopHandlers.dispose();
    process.off('exit', onExit);
    if (local.nodes.some((n) => n.child !== undefined))
      log.info({ msgId: Ids.stopped, code }, 'halyard up stopped');
  }
  return code;
}

/** Starts the launcher and waits until every process of the mesh is READY. */
async function startMesh(
  mesh: Mesh,
  launcherLog: string,
  log: Logger,
  stop: AbortController,
): Promise<void> {
  await mesh.start();
  void supervise(
    {
      name: 'the launcher',
      exited: async () => {
        const exit = await mesh.launcherExited();
        const detail = describeExit(exit.code, exit.signal);
        if (!exit.requested) {
          log.error(
            { msgId: Ids.meshFailed, code: exit.code, signal: exit.signal, log: launcherLog },
            `the launcher exited unexpectedly (${detail}); see ${launcherLog}`,
          );
        }
        return { unexpected: !exit.requested, detail };
      },
      restart: async () => {
        mesh.restartLauncher();
      },
    },
    {
      log,
      stopping: stop.signal,
      onGiveUp: (message) =>
        stop.abort(new UpError(Ids.meshFailed, `the mesh stopped: ${message}`)),
    },
  );
  const timeout = AbortSignal.timeout(MESH_READY_TIMEOUT_MS);
  try {
    await mesh.waitReady(AbortSignal.any([stop.signal, timeout]));
  } catch (err) {
    if (!timeout.aborted || stop.signal.aborted) throw err;
    throw new UpError(
      Ids.meshFailed,
      `the mesh was not ready within ${MESH_READY_TIMEOUT_MS / 1000} s; see ${launcherLog}`,
    );
  }
}

/**
 * SIGINT / SIGTERM: the first aborts `stop` (an orderly stop), the second kills
 * everything at once with `killAll` and exits 1.
 */
function onStopSignals(
  log: Logger,
  stop: AbortController,
  killAll: () => void,
): { dispose(): void } {
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
    killAll();
    process.exit(1);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** SIGTERM to every running node, without waiting: for the process's exit hook. */
function terminateNodes(local: LocalNats): void {
  for (const n of local.nodes) {
    try {
      if (n.pid !== undefined) process.kill(n.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
}

function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** 0 for a requested stop; otherwise the failure is logged and the code is 1. */
function exitCodeOf(err: unknown, log: Logger): number {
  if (err instanceof StopRequested) return 0;
  if (err instanceof UpError) {
    log.error({ msgId: err.msgId }, err.message);
  } else {
    const message = err instanceof Error ? err.message : String(err);
    log.error({ msgId: Ids.startFailed, err }, `halyard up failed: ${message}`);
  }
  return 1;
}
