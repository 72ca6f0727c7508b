/**
 * The mesh part of `halyard up`: one launcher with deploy/local/mesh.yaml, run as a child
 * process in its own process group (a Ctrl-C in the terminal reaches only `up`, which then
 * asks the launcher to stop its children in order). Progress comes from the launcher's
 * lifecycle events on the bus; the endpoints from its `display` reply. A launcher that
 * exits on its own is started again by `up` (up/supervise.ts) and adopts the children
 * still running.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Bus, LauncherStatus, LifecycleEvent, Subscription } from '../../bus/index.js';
import { Subjects } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { BusEnv } from '../common/bus-settings.js';
import { commandLineOf, isMarkedProcess, procStat } from '../common/proc.js';
import { sleep } from '../common/sleep.js';
import { signalProcess, stopProcess } from '../common/stop-process.js';
import { forHost, loadLauncherConfig } from '../launcher/config.js';
import { ControlCodecsOf } from '../launcher/control.js';
import { isLauncherChild, launcherMarker } from '../launcher/process.js';
import { CliLogIds as Ids, type Logger } from './log.js';

const Kind = halyard.launcher.v1.LifecycleEvent.Kind;
const State = halyard.launcher.v1.ProcessStatus.State;

export const MESH_HOST_ID = 'local';
/** Admin ports are `adminBase + offset`: the launcher's control and admin first. */
export const MeshAdminOffsets = {
  launcherGrpc: 0,
  launcherAdmin: 1,
  discovery: 10,
  gateway: 20,
  cache: 30,
  /** The web console `up` serves (services/console). */
  console: 40,
} as const;
/** From the bus's base port: 4222 → admin ports from 9222. */
export const ADMIN_BASE_OFFSET = 5000;

export interface MeshOptions {
  readonly repoRoot: string;
  readonly configFile: string;
  readonly servers: readonly string[];
  readonly adminBase: number;
  readonly logFile: string;
  /** Added to the launcher's environment, which its children inherit. */
  readonly env: Readonly<Record<string, string>>;
  readonly out: NodeJS.WritableStream;
  readonly log: Logger;
}

/** How the launcher process ended. */
export interface LauncherExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** `stop()` asked for it; otherwise it crashed or was killed from outside. */
  readonly requested: boolean;
}

/** A child the launcher reported STARTED, as its event said. */
interface ReportedChild {
  readonly component: string;
  readonly instance: number;
  readonly pid: number;
  readonly processStart: number;
}

/**
 * The environment variable `up` sets on its launcher, naming the launcher's log file:
 * with the start time kept in the pid file, it proves that a pid read from that file
 * still is that launcher.
 */
export const UP_LAUNCHER_MARKER_ENV = 'HALYARD_UP_LAUNCHER';

/** The launcher `up` runs, from the repository root: the built JavaScript (`npm run build`). */
export const LAUNCHER_MAIN = 'dist/services/launcher/main.js';

export interface Endpoint {
  readonly component: string;
  readonly instance: number;
  readonly port: number;
  readonly adminPort?: number;
}

/** How many instances of each component the mesh's launcher runs (for progress: n of m ready). */
export async function expectedInstances(file: string): Promise<Map<string, number>> {
  const components = forHost(await loadLauncherConfig(file), MESH_HOST_ID);
  return new Map([...components].map(([name, c]) => [name, c.instances]));
}

export class Mesh {
  private child: ChildProcess | undefined;
  private events: Subscription | undefined;
  /** The launcher's children, from STARTED events; killed if the launcher leaves them. */
  private readonly children = new Map<string, ReportedChild>();
  private readonly ready = new Set<string>();
  /** Every instance of the config; known once start() has read it. */
  private total = 0;
  private readyWaiter: (() => void) | undefined;
  private stopping = false;
  private exit: Promise<LauncherExit> = Promise.resolve({
    code: null,
    signal: null,
    requested: true,
  });

  constructor(
    private readonly options: MeshOptions,
    private readonly bus: Bus,
  ) {}

  /** Resolves when the current launcher process has exited, saying whether it was asked to. */
  launcherExited(): Promise<LauncherExit> {
    return this.exit;
  }

  /** Reads the config, follows lifecycle events from now, then starts the launcher. */
  async start(): Promise<void> {
    const { out } = this.options;
    const expected = await expectedInstances(this.options.configFile);
    this.total = [...expected.values()].reduce((a, b) => a + b, 0);
    this.events = await this.bus.subscribe(
      { kind: 'lifecycle', filter: `${MESH_HOST_ID}.>`, from: { time: new Date() } },
      ({ event }) => this.progress(event),
    );
    this.spawnLauncher();
    out.write(`Starting the mesh (${this.total} processes):\n`);
  }

  /**
   * Starts the launcher again after it exited on its own. Its config says `recovery:
   * adopt`: it finds the children still running by replay and adopts them.
   */
  restartLauncher(): number | undefined {
    if (this.stopping) return undefined;
    const pid = this.spawnLauncher();
    this.options.out.write(
      `  ↻ launcher     restarted (pid ${pid}): adopting the processes still running\n`,
    );
    return pid;
  }

  private spawnLauncher(): number | undefined {
    const { log } = this.options;
    fs.mkdirSync(path.dirname(this.options.logFile), { recursive: true });
    const logFd = fs.openSync(this.options.logFile, 'a');
    const { adminBase } = this.options;
    const args = [
      '--enable-source-maps',
      // Mostly idle: 1 MB semi-spaces keep it ~15 MB smaller (bench/README.md).
      '--max-semi-space-size=1',
      path.join(this.options.repoRoot, LAUNCHER_MAIN),
      '--config',
      this.options.configFile,
      '--host-id',
      MESH_HOST_ID,
      // The components come from the mesh configuration `up` published on the bus.
      '--mesh-config',
      'bus',
      '--nats',
      this.options.servers.join(','),
      '--grpc',
      `127.0.0.1:${adminBase + MeshAdminOffsets.launcherGrpc}`,
      '--admin-port',
      String(adminBase + MeshAdminOffsets.launcherAdmin),
    ];
    const child = spawn(process.execPath, args, {
      cwd: this.options.repoRoot,
      detached: true,
      stdio: ['ignore', logFd, logFd],
      env: {
        ...process.env,
        ...this.options.env,
        [BusEnv.servers]: this.options.servers.join(','),
        HALYARD_ADMIN_BASE: String(adminBase),
        [UP_LAUNCHER_MARKER_ENV]: this.options.logFile,
      },
    });
    fs.closeSync(logFd);
    this.child = child;
    if (child.pid !== undefined) writeLauncherPid(this.options.logFile, child.pid);
    this.exit = new Promise((resolve) => {
      const exited = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.child === child) this.child = undefined;
        resolve({ code, signal, requested: this.stopping });
      };
      child.once('exit', exited);
      child.once('error', () => {
        if (child.pid === undefined) exited(null, null);
      });
    });
    log.info(
      { msgId: Ids.meshStarting, launcherPid: child.pid, config: this.options.configFile },
      `starting the mesh: one launcher (pid ${child.pid}) with ${path.relative(this.options.repoRoot, this.options.configFile)}; its log: ${this.options.logFile}`,
    );
    return child.pid;
  }

  /** Resolves once every instance of the config has been READY. */
  waitReady(signal: AbortSignal): Promise<void> {
    if (this.ready.size >= this.total) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.readyWaiter = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
    });
  }

  private progress(e: LifecycleEvent): void {
    const name = `${e.component}#${e.instance}`;
    const out = this.options.out;
    switch (e.kind) {
      case Kind.STARTED:
        this.children.set(name, {
          component: e.component,
          instance: e.instance,
          pid: e.pid,
          processStart: e.processStart,
        });
        if (e.reason.startsWith('adopted')) {
          out.write(`  ↻ ${name.padEnd(12)} ${e.reason} (pid ${e.pid})\n`);
        }
        break;
      case Kind.STARTING:
        if (!this.ready.has(name)) out.write(`  … ${name.padEnd(12)} starting on port ${e.port}\n`);
        break;
      case Kind.READY:
        if (!this.ready.has(name)) {
          this.ready.add(name);
          out.write(
            `  ✓ ${name.padEnd(12)} ready (${this.ready.size}/${this.total}, port ${e.port})\n`,
          );
          if (this.ready.size >= this.total) this.readyWaiter?.();
        }
        break;
      case Kind.EXITED:
        this.children.delete(name);
        if (!this.ready.has(name)) out.write(`  ✗ ${name.padEnd(12)} exited: ${e.reason}\n`);
        break;
      case Kind.GAVE_UP:
        out.write(`  ✗ ${name.padEnd(12)} gave up: ${e.reason}\n`);
        break;
      case Kind.STOPPED:
        this.children.delete(name);
        if (this.stopping) out.write(`  ■ ${name.padEnd(12)} stopped\n`);
        break;
    }
  }

  /** The launcher's view of its processes (bus control, `display`). */
  async display(): Promise<LauncherStatus | undefined> {
    try {
      return await this.bus.request(
        Subjects.control('launcher', MESH_HOST_ID, 'display'),
        {},
        ControlCodecsOf.display,
        3000,
      );
    } catch {
      return undefined;
    }
  }

  endpoints(status: LauncherStatus): Endpoint[] {
    const offsets = MeshAdminOffsets as Record<string, number>;
    return status.processes
      .filter((p) => p.state === State.READY || p.state === State.RUNNING)
      .map((p) => {
        const offset = offsets[p.component];
        return {
          component: p.component,
          instance: p.instance,
          port: p.port,
          ...(offset !== undefined
            ? { adminPort: this.options.adminBase + offset + p.instance }
            : {}),
        };
      })
      .sort((a, b) => a.component.localeCompare(b.component) || a.instance - b.instance);
  }

  /**
   * SIGTERM to the launcher, which stops its children in reverse dependency order; after
   * `timeoutMs` the launcher's group and every child it reported are killed.
   */
  async stop(timeoutMs: number): Promise<void> {
    const { log } = this.options;
    this.stopping = true;
    const child = this.child;
    if (child) this.options.out.write('Stopping the mesh:\n');
    if (child?.pid !== undefined) {
      log.info(
        { msgId: Ids.meshStopping, launcherPid: child.pid },
        'stopping the mesh: the launcher stops its children',
      );
      const { killed } = await stopProcess(
        { pid: child.pid, group: true, exited: this.exit },
        'SIGTERM',
        timeoutMs,
      );
      if (killed) {
        log.warn(
          { msgId: Ids.forcedStop, launcherPid: child.pid },
          `the launcher did not stop within ${timeoutMs / 1000} s: killed it`,
        );
      }
    }
    // Whatever the launcher left (it was killed, or crashed): their groups go too.
    for (const [name, reported] of this.children) {
      if (killLeftChild(reported)) {
        log.warn(
          { msgId: Ids.forcedStop, pid: reported.pid },
          `killed ${name} (pid ${reported.pid}) left running`,
        );
      }
    }
    await sleep(200);
    await this.events?.stop().catch(() => {});
    fs.rmSync(launcherPidFile(this.options.logFile), { force: true });
  }

  /** Synchronous last resort (second Ctrl-C, process exit). */
  killAllSync(): void {
    this.stopping = true;
    if (this.child?.pid !== undefined)
      signalProcess({ pid: this.child.pid, group: true }, 'SIGKILL');
    for (const reported of this.children.values()) killLeftChild(reported);
  }
}

/**
 * SIGKILLs the group of a child an event reported, only when the pid still is that child
 * (its start time and the launcher's marker): an event is not proof, and pids are reused.
 */
function killLeftChild(c: ReportedChild): boolean {
  const marker = launcherMarker(MESH_HOST_ID, c.component, c.instance);
  if (!isLauncherChild(c.pid, c.processStart, marker)) return false;
  return signalProcess({ pid: c.pid, group: true, start: c.processStart }, 'SIGKILL');
}

/** Where the launcher's pid is kept (next to its log), so that a later `up` finds a leftover. */
function launcherPidFile(logFile: string): string {
  return path.join(path.dirname(logFile), 'launcher.pid');
}

/** The pid and its start time: together, with the marker, the identity of the launcher. */
function writeLauncherPid(logFile: string, pid: number): void {
  const start = procStat(pid)?.start;
  fs.writeFileSync(launcherPidFile(logFile), `${JSON.stringify({ pid, start })}\n`);
}

function readLauncherPid(file: string): { pid: number; start: number } | undefined {
  try {
    const { pid, start } = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    return typeof pid === 'number' && typeof start === 'number' ? { pid, start } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A launcher left running by an `up` that was killed (kill -9): stopped with SIGTERM (it
 * stops its children) while the bus may still be up, then killed with its group. Only the
 * very launcher the pid file names is touched — its recorded start time, the marker `up`
 * set in its environment, this launcher with this config on its command line — since
 * pids get reused.
 */
export async function stopLeftoverLauncher(
  logFile: string,
  configFile: string,
  log: Logger,
  timeoutMs: number,
): Promise<void> {
  const file = launcherPidFile(logFile);
  const recorded = readLauncherPid(file);
  if (!recorded) {
    fs.rmSync(file, { force: true });
    return;
  }
  const { pid, start } = recorded;
  const marker = { name: UP_LAUNCHER_MARKER_ENV, value: logFile };
  const cmd = isMarkedProcess(pid, start, marker) ? commandLineOf(pid) : undefined;
  if (cmd?.includes(LAUNCHER_MAIN) && cmd.includes(configFile)) {
    log.warn(
      { msgId: Ids.leftoverServer, launcherPid: pid },
      `stopping the launcher (pid ${pid}) left running by an earlier halyard up`,
    );
    await stopProcess({ pid, group: true, start }, 'SIGTERM', timeoutMs);
  }
  fs.rmSync(file, { force: true });
}
