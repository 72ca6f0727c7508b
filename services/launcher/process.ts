/**
 * One child process in its own process group: spawned by this launcher, or adopted
 * from a launcher run that died. Stopping signals the whole group and SIGKILLs it
 * after the timeout, so nothing a child started outlives it.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

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
  stop(signal: NodeJS.Signals, timeoutMs: number): Promise<{ readonly killed: boolean }>;
}

export interface SpawnSpec {
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd?: string;
  readonly env: NodeJS.ProcessEnv;
  readonly onOutput: (stream: 'stdout' | 'stderr', line: string) => void;
}

const POLL_MS = 25;

interface ProcStat {
  readonly pgrp: number;
  readonly start: number;
}

/** Reads /proc/<pid>/stat; undefined when there is no such process (or it is a zombie). */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z') return undefined;
  return { pgrp: Number(fields[2]), start: Number(fields[19]) };
}

/** Whether the pid still is the process that was started at `processStart`. */
export function isSameProcess(pid: number, processStart: number): boolean {
  const stat = procStat(pid);
  return stat !== undefined && stat.start === processStart && stat.pgrp === pid;
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

async function waitGone(isGone: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!isGone()) {
    if (Date.now() >= deadline) return false;
    await sleep(POLL_MS);
  }
  return true;
}

async function stopGroup(
  pgid: number,
  leaderGone: () => boolean,
  signal: NodeJS.Signals,
  timeoutMs: number,
): Promise<{ killed: boolean }> {
  const gone = () => leaderGone() && !groupAlive(pgid);
  if (gone()) return { killed: false };
  signalGroup(pgid, signal);
  if (await waitGone(gone, timeoutMs)) return { killed: false };
  signalGroup(pgid, 'SIGKILL');
  await waitGone(gone, 10_000);
  return { killed: true };
}

export function spawnChild(spec: SpawnSpec): Child {
  const proc = spawn(spec.command, [...spec.args], {
    cwd: spec.cwd,
    env: spec.env,
    // Its own process group: a signal to the group reaches everything it started.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let leaderExited = false;
  const exited = new Promise<Exit>((resolve) => {
    proc.once('error', (error) => {
      if (proc.pid === undefined) resolve({ code: null, signal: null, error: error.message });
    });
    proc.once('exit', (code, signal) => {
      leaderExited = true;
      resolve({ code, signal });
    });
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
        ? stopGroup(pid, () => leaderExited, signal, timeoutMs)
        : Promise.resolve({ killed: false }),
  };
}

/**
 * A child a previous launcher run started. It is not our child, so its exit status is
 * unknown: its end is seen by polling /proc.
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
    stop: (signal, timeoutMs) => stopGroup(pid, gone, signal, timeoutMs),
  };
}
