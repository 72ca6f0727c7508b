/**
 * One supervised instance of a component: starts its process, probes readiness,
 * applies the restart policy when it fails, stops it on request. Every transition
 * goes through the LifecycleRecorder.
 */
import { createServer } from 'node:net';
import type { Logger } from 'pino';
import type { ProcessStatus } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { sleep } from '../common/sleep.js';
import { settingsDir, settingsEnv } from './component-settings.js';
import type { ComponentConfig } from './config.js';
import type { LifecycleRecorder } from './lifecycle.js';
import { LogIds } from './log-ids.js';
import { launcherMetrics } from './metrics.js';
import {
  type Child,
  type Exit,
  LAUNCHER_MARKER_ENV,
  launcherMarker,
  spawnChild,
} from './process.js';
import { probeFor, type Registry } from './readiness.js';
import { afterExit } from './restart-policy.js';
import { type StartedSpec, specOf } from './spec.js';

export const State = halyard.launcher.v1.ProcessStatus.State;
export type StateName = Exclude<keyof typeof State, 'STATE_UNSPECIFIED'>;

export interface InstanceContext {
  readonly hostId: string;
  /** Where this host's children listen (HALYARD_HOST_ADDRESS). */
  readonly address: string;
  readonly recorder: LifecycleRecorder;
  readonly logger: Logger;
  readonly registry: Registry;
}

const PROBE_INTERVAL_MS = 100;

/** A port nobody listens on right now, for an instance that asks for a dynamic port. */
export function freePort(address = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, address, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export class Instance {
  state: StateName = 'STOPPED';
  private child: Child | undefined;
  private startedAtMs = 0;
  private restarts = 0;
  private failures = 0;
  private lastExit = '';
  private backoff: NodeJS.Timeout | undefined;
  /** Bumped on every launch and stop: callbacks of an older generation are stale. */
  private generation = 0;
  private readonly listeners = new Set<() => void>();
  private stopping: Promise<void> | undefined;

  /** What its process was started as (or will be, before the first start). */
  started: StartedSpec;

  constructor(
    readonly component: string,
    readonly number: number,
    private current: ComponentConfig,
    /** The configuration version `config` comes from (0: the file). */
    private currentVersion: number,
    readonly port: number,
    private readonly ctx: InstanceContext,
  ) {
    this.started = specOf(current, currentVersion);
  }

  /** What its next start runs. */
  get config(): ComponentConfig {
    return this.current;
  }

  get configVersion(): number {
    return this.currentVersion;
  }

  /** What its next start runs, and the configuration version that comes from. */
  setConfig(config: ComponentConfig, configVersion: number): void {
    this.current = config;
    this.currentVersion = configVersion;
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  /** Starts it unless it runs; a start by an operator also forgets past failures. */
  start(): void {
    this.failures = 0;
    if (this.state === 'BACKING_OFF' || this.state === 'GAVE_UP' || this.state === 'STOPPED') {
      clearTimeout(this.backoff);
      this.launch();
    }
  }

  /** Takes over a process a previous launcher run started as `started`. */
  adopt(child: Child, started: StartedSpec): void {
    this.generation++;
    this.child = child;
    this.started = started;
    this.startedAtMs = Date.now();
    this.setState('RUNNING');
    this.watch(child, this.generation);
    void this.probe(child, this.generation);
  }

  /** Stops it; `drainMs` is a pause in STOPPING before the signal, for clients to move away. */
  stop(reason = '', drainMs = 0): Promise<void> {
    // A second stop while one is under way waits for that one.
    this.stopping ??= this.stopNow(reason, drainMs).finally(() => {
      this.stopping = undefined;
    });
    return this.stopping;
  }

  private async stopNow(reason: string, drainMs: number): Promise<void> {
    clearTimeout(this.backoff);
    const child = this.child;
    const wasRunning =
      child && (this.state === 'STARTING' || this.state === 'RUNNING' || this.state === 'READY');
    this.generation++;
    if (!child || !wasRunning) {
      this.setState('STOPPED');
      return;
    }
    const { recorder } = this.ctx;
    this.setState('STOPPING');
    recorder.record('STOPPING', this.component, this.number, {
      pid: child.pid,
      port: this.port,
      reason,
    });
    if (drainMs > 0) await sleep(drainMs);
    const { signal, timeoutSeconds } = this.config.stop;
    const { killed } = await child.stop(signal, timeoutSeconds * 1000);
    const exit = await child.exited;
    if (killed) {
      this.ctx.logger.warn(
        { msgId: LogIds.killed, component: this.component, instance: this.number, pid: child.pid },
        `${this.component}#${this.number} did not stop within ${timeoutSeconds} s: killed`,
      );
    }
    this.lastExit = describeExit(exit);
    recorder.record('STOPPED', this.component, this.number, {
      pid: child.pid,
      port: this.port,
      exitCode: exit.code ?? -1,
      signal: exit.signal ?? '',
      uptimeMs: Date.now() - this.startedAtMs,
      reason: killed ? `killed after ${timeoutSeconds} s` : reason,
    });
    this.child = undefined;
    this.setState('STOPPED');
  }

  /** Resolves true once READY, false if it leaves the running states or the time is up. */
  waitReady(timeoutMs: number): Promise<boolean> {
    return this.settle(timeoutMs, false, (state) => {
      if (state === 'READY') return true;
      return state === 'STARTING' || state === 'RUNNING' ? undefined : false;
    });
  }

  /** Resolves true if it is still READY after `ms`, false as soon as it leaves READY. */
  staysReady(ms: number): Promise<boolean> {
    return this.settle(ms, true, (state) => (state === 'READY' ? undefined : false));
  }

  /**
   * Resolves with what `decide` answers for the current state and each next one, or
   * with `atTimeout` once `ms` have passed without an answer.
   */
  private settle(
    ms: number,
    atTimeout: boolean,
    decide: (state: StateName) => boolean | undefined,
  ): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => {
        const answer = decide(this.state);
        if (answer !== undefined) done(answer);
      };
      const timer = setTimeout(() => done(atTimeout), ms);
      const done = (answer: boolean) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve(answer);
      };
      this.listeners.add(check);
      check();
    });
  }

  status(): ProcessStatus {
    return {
      component: this.component,
      instance: this.number,
      state: State[this.state],
      pid: this.pid,
      port: this.port,
      startedAtMs: this.child ? this.startedAtMs : 0,
      restarts: this.restarts,
      lastExit: this.lastExit,
    };
  }

  private setState(state: StateName): void {
    this.state = state;
    for (const listener of [...this.listeners]) listener();
  }

  private launch(): void {
    const generation = ++this.generation;
    const { recorder, logger, hostId, address } = this.ctx;
    const { component, number, port, config } = this;
    this.setState('STARTING');
    recorder.record('STARTING', component, number, { port });
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...config.env,
      ...settingsEnv(component, config, settingsDir(hostId), (error) =>
        logger.error(
          { msgId: LogIds.settingsUnwritten, component, instance: number, err: error },
          `${component}#${number}: its settings file could not be written`,
        ),
      ),
      HALYARD_HOST: hostId,
      HALYARD_HOST_ADDRESS: address,
      HALYARD_COMPONENT: component,
      ...(config.version === undefined ? {} : { HALYARD_COMPONENT_VERSION: config.version }),
      [config.instanceEnv]: String(number),
      [LAUNCHER_MARKER_ENV]: launcherMarker(hostId, component, number).value,
      ...(config.port ? { [config.port.env]: String(port) } : {}),
    };
    const child = spawnChild({
      command: config.command,
      args: config.args,
      cwd: config.cwd,
      env,
      onOutput: (stream, line) =>
        logger[stream === 'stdout' ? 'info' : 'warn'](
          {
            msgId: stream === 'stdout' ? LogIds.childStdout : LogIds.childStderr,
            component,
            instance: number,
            stream,
          },
          line,
        ),
    });
    this.child = child;
    this.startedAtMs = Date.now();
    this.started = specOf(config, this.configVersion);
    this.watch(child, generation);
    if (!child.pid) return; // the exit watcher reports why it never ran
    recorder.record(
      'STARTED',
      component,
      number,
      { pid: child.pid, port, processStart: child.processStart },
      this.started,
    );
    this.setState('RUNNING');
    void this.probe(child, generation);
  }

  /** Without a readiness probe a running process counts as ready at once. */
  private async probe(child: Child, generation: number): Promise<void> {
    const { readiness, readyTimeoutSeconds } = this.config;
    const ready = () => {
      this.ctx.recorder.record('READY', this.component, this.number, {
        pid: child.pid,
        port: this.port,
      });
      this.setState('READY');
    };
    if (!readiness) return ready();
    const probe = probeFor(readiness, this.ctx.address, this.port, this.ctx.registry);
    const deadline = Date.now() + readyTimeoutSeconds * 1000;
    while (this.generation === generation && this.state === 'RUNNING') {
      if (await probe()) {
        if (this.generation === generation && this.state === 'RUNNING') ready();
        return;
      }
      if (Date.now() > deadline) {
        this.ctx.logger.warn(
          {
            msgId: LogIds.notReady,
            component: this.component,
            instance: this.number,
            pid: child.pid,
          },
          `${this.component}#${this.number} not ready after ${readyTimeoutSeconds} s`,
        );
        return;
      }
      await sleep(PROBE_INTERVAL_MS);
    }
  }

  private watch(child: Child, generation: number): void {
    void child.exited.then((exit) => {
      if (this.generation === generation) this.onFailure(child, exit);
    });
  }

  /** The process ended without being asked to: record it and apply the restart policy. */
  private onFailure(child: Child, exit: Exit): void {
    const { recorder } = this.ctx;
    const { component, number, port } = this;
    const uptimeMs = Date.now() - this.startedAtMs;
    this.lastExit = describeExit(exit);
    this.child = undefined;
    recorder.record('EXITED', component, number, {
      pid: child.pid,
      port,
      exitCode: exit.code ?? -1,
      signal: exit.signal ?? '',
      uptimeMs,
      reason: exit.error ?? '',
    });
    const { restart } = this.config;
    const { decision, failures } = afterExit(
      {
        intervalsMs: restart.intervals.map((s) => s * 1000),
        minUptimeMs: restart.minUptimeSeconds * 1000,
      },
      this.failures,
      uptimeMs,
    );
    this.failures = failures;
    if (decision.action === 'give-up') {
      this.setState('GAVE_UP');
      recorder.record('GAVE_UP', component, number, {
        port,
        attempt: decision.attempt,
        reason: `failed ${decision.attempt} times in a row; last: ${this.lastExit}`,
      });
      return;
    }
    this.setState('BACKING_OFF');
    recorder.record('RESTARTING', component, number, {
      port,
      attempt: decision.attempt,
      delayMs: decision.delayMs,
    });
    const generation = this.generation;
    this.backoff = setTimeout(() => {
      if (this.generation !== generation) return;
      this.restarts++;
      launcherMetrics.restarts.inc({ component });
      this.launch();
    }, decision.delayMs);
  }
}

function describeExit(exit: Exit): string {
  if (exit.error) return `not started: ${exit.error}`;
  if (exit.signal) return `signal ${exit.signal}`;
  return exit.code === null ? 'ended' : `code ${exit.code}`;
}
