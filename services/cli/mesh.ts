/**
 * The mesh part of `halyard up`: one launcher with deploy/local/mesh.yaml, run as a child
 * process in its own process group (a Ctrl-C in the terminal reaches only `up`, which then
 * asks the launcher to stop its children in order). Progress comes from the launcher's
 * lifecycle events on the bus; the endpoints from its `display` reply.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Bus, LauncherStatus, LifecycleEvent, Subscription } from '../../bus/index.js';
import { Subjects } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { commandLineOf, isAlive } from '../common/proc.js';
import { sleep } from '../common/sleep.js';
import { signalProcess, stopProcess } from '../common/stop-process.js';
import { forHost, loadLauncherConfig } from '../launcher/config.js';
import { ControlCodecsOf } from '../launcher/control.js';
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
  /** Pids of the launcher's children, from STARTED events; killed if the launcher leaves them. */
  private readonly pids = new Map<string, number>();
  private readonly ready = new Set<string>();
  /** Every instance of the config; known once start() has read it. */
  private total = 0;
  private readyWaiter: (() => void) | undefined;
  private stopping = false;
  private exited: Promise<number | null> = Promise.resolve(null);
  private exitListener: ((code: number | null, signal: NodeJS.Signals | null) => void) | undefined;

  constructor(
    private readonly options: MeshOptions,
    private readonly bus: Bus,
  ) {}

  /** Calls back when the launcher exits on its own (not when stopped). */
  onUnexpectedExit(listener: (code: number | null, signal: NodeJS.Signals | null) => void): void {
    this.exitListener = listener;
  }

  /** Reads the config, follows lifecycle events from now, then starts the launcher. */
  async start(): Promise<void> {
    const { log, out } = this.options;
    const expected = await expectedInstances(this.options.configFile);
    this.total = [...expected.values()].reduce((a, b) => a + b, 0);
    this.events = await this.bus.subscribe(
      { kind: 'lifecycle', filter: `${MESH_HOST_ID}.>`, from: { time: new Date() } },
      ({ event }) => this.progress(event),
    );
    fs.mkdirSync(path.dirname(this.options.logFile), { recursive: true });
    const logFd = fs.openSync(this.options.logFile, 'a');
    const { adminBase } = this.options;
    const args = [
      '--import',
      'tsx',
      path.join(this.options.repoRoot, 'services/launcher/main.ts'),
      '--config',
      this.options.configFile,
      '--host-id',
      MESH_HOST_ID,
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
        HALYARD_NATS: this.options.servers.join(','),
        HALYARD_ADMIN_BASE: String(adminBase),
      },
    });
    fs.closeSync(logFd);
    this.child = child;
    if (child.pid !== undefined)
      fs.writeFileSync(launcherPidFile(this.options.logFile), `${child.pid}\n`);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.child = undefined;
        resolve(code);
        this.exitListener?.(code, signal);
      });
      child.once('error', () => resolve(null));
    });
    log.info(
      { msgId: Ids.meshStarting, launcherPid: child.pid, config: this.options.configFile },
      `starting the mesh: one launcher (pid ${child.pid}) with ${path.relative(this.options.repoRoot, this.options.configFile)}; its log: ${this.options.logFile}`,
    );
    out.write(`Starting the mesh (${this.total} processes):\n`);
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
        this.pids.set(name, e.pid);
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
        this.pids.delete(name);
        if (!this.ready.has(name)) out.write(`  ✗ ${name.padEnd(12)} exited: ${e.reason}\n`);
        break;
      case Kind.GAVE_UP:
        out.write(`  ✗ ${name.padEnd(12)} gave up: ${e.reason}\n`);
        break;
      case Kind.STOPPED:
        this.pids.delete(name);
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
    this.exitListener = undefined;
    this.stopping = true;
    const child = this.child;
    if (child) this.options.out.write('Stopping the mesh:\n');
    if (child?.pid !== undefined) {
      log.info(
        { msgId: Ids.meshStopping, launcherPid: child.pid },
        'stopping the mesh: the launcher stops its children',
      );
      const { killed } = await stopProcess(
        { pid: child.pid, group: true, exited: this.exited },
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
    for (const [name, pid] of this.pids) {
      if (signalProcess({ pid, group: true }, 'SIGKILL')) {
        log.warn({ msgId: Ids.forcedStop, pid }, `killed ${name} (pid ${pid}) left running`);
      }
    }
    await sleep(200);
    await this.events?.stop().catch(() => {});
    fs.rmSync(launcherPidFile(this.options.logFile), { force: true });
  }

  /** Synchronous last resort (second Ctrl-C, process exit). */
  killAllSync(): void {
    if (this.child?.pid !== undefined)
      signalProcess({ pid: this.child.pid, group: true }, 'SIGKILL');
    for (const pid of this.pids.values()) signalProcess({ pid, group: true }, 'SIGKILL');
  }
}

/** Where the launcher's pid is kept (next to its log), so that a later `up` finds a leftover. */
function launcherPidFile(logFile: string): string {
  return path.join(path.dirname(logFile), 'launcher.pid');
}

/**
 * A launcher left running by an `up` that was killed (kill -9): stopped with SIGTERM (it
 * stops its children) while the bus may still be up, then killed with its group. Only a
 * process that still runs this launcher with this config is touched (pids get reused).
 */
export async function stopLeftoverLauncher(
  logFile: string,
  configFile: string,
  log: Logger,
  timeoutMs: number,
): Promise<void> {
  const file = launcherPidFile(logFile);
  let pid: number;
  try {
    pid = Number.parseInt(fs.readFileSync(file, 'utf8'), 10);
  } catch {
    return;
  }
  const cmd = pid > 0 && isAlive(pid) ? commandLineOf(pid) : undefined;
  if (cmd?.includes('services/launcher/main.ts') && cmd.includes(configFile)) {
    log.warn(
      { msgId: Ids.leftoverServer, launcherPid: pid },
      `stopping the launcher (pid ${pid}) left running by an earlier halyard up`,
    );
    await stopProcess({ pid, group: true }, 'SIGTERM', timeoutMs);
  }
  fs.rmSync(file, { force: true });
}
