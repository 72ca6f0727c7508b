/**
 * One child process in its own process group: spawned by this launcher, or adopted
 * from a launcher run that died. Stopping signals the whole group and SIGKILLs it
 * after the timeout, so nothing a child started outlives it.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { isMarkedProcess, procStat } from '../common/proc.js';
import { sleep } from '../common/sleep.js';
import { type StopResult, stopProcess } from '../common/stop-process.js';

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when the process never ran (e.g. the command does not exist). */
  readonly error?: string;
}

export interface Child {
  readonly pid: number;
  /** Start time from /proc (0 if unknown): with the pid, the identity of the process. */
  readonly processStart: number;
  readonly exited: Promise<Exit>;
  /** Signals the group, then SIGKILLs it after `timeoutMs`; resolves when the group is gone. */
  stop(signal: NodeJS.Signals, timeoutMs: number): Promise<StopResult>;
}

export interface SpawnSpec {
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd?: string;
  readonly env: NodeJS.ProcessEnv;
  readonly onOutput: (stream: 'stdout' | 'stderr', line: string) => void;
}

/**
 * The environment variable the launcher sets on every child it starts, naming the host's
 * launcher and the instance (`<hostId>/<component>/<instance>`). A later launcher run (or
 * `halyard up`) reads it back from /proc before it signals a pid it only read in an event:
 * a pid that does not carry it is not a Halyard child, whatever the event says.
 */
export const LAUNCHER_MARKER_ENV = 'HALYARD_LAUNCHER_MARKER';

export function launcherMarker(hostId: string, component: string, instance: number) {
  return { name: LAUNCHER_MARKER_ENV, value: `${hostId}/${component}/${instance}` } as const;
}

/**
 * Whether the pid still is the child this host's launcher started as that instance at
 * `processStart`: the same start time, the launcher's marker, leading its own group.
 */
export function isLauncherChild(
  pid: number,
  processStart: number,
  marker: ReturnType<typeof launcherMarker>,
): boolean {
  return isMarkedProcess(pid, processStart, marker) && procStat(pid)?.pgrp === pid;
}

/** Whether the pid still is the process that was started at `processStart` (not a zombie). */
function isSameProcess(pid: number, processStart: number): boolean {
  const stat = procStat(pid);
  return stat !== undefined && stat.state !== 'Z' && stat.start === processStart;
}

export function spawnChild(spec: SpawnSpec): Child {
  const proc = spawn(spec.command, [...spec.args], {
    cwd: spec.cwd,
    env: spec.env,
    // Its own process group: a signal to the group reaches everything it started.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<Exit>((resolve) => {
    proc.once('error', (error) => {
      if (proc.pid === undefined) resolve({ code: null, signal: null, error: error.message });
    });
    proc.once('exit', (code, signal) => resolve({ code, signal }));
  });
  for (const stream of ['stdout', 'stderr'] as const) {
    const lines = createInterface({ input: proc[stream], crlfDelay: Number.POSITIVE_INFINITY });
    lines.on('line', (line) => spec.onOutput(stream, line));
  }
  const pid = proc.pid ?? 0;
  return {
    pid,
    processStart: pid ? (procStat(pid)?.start ?? 0) : 0,
    exited,
    stop: (signal, timeoutMs) =>
      pid
        ? stopProcess({ pid, group: true, exited }, signal, timeoutMs)
        : Promise.resolve({ killed: false }),
  };
}

/**
 * A child a previous launcher run started (checked with isLauncherChild). It is not our
 * child, so its exit status is unknown: its end is seen by polling /proc.
 */
export function adoptChild(pid: number, processStart: number): Child {
  const gone = () => !isSameProcess(pid, processStart);
  const exited = (async (): Promise<Exit> => {
    while (!gone()) await sleep(200);
    return { code: null, signal: null };
  })();
  return {
    pid,
    processStart,
    exited,
    stop: (signal, timeoutMs) =>
      stopProcess({ pid, group: true, start: processStart }, signal, timeoutMs),
  };
}
