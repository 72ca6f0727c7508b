/**
 * What the system says about a process, by pid: whether it exists, its
 * `/proc/<pid>/stat` fields, its command line and its resident memory. Where there is
 * no /proc (not Linux), the readers return undefined.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The fields of `/proc/<pid>/stat` Halyard reads (see proc(5)). */
export interface ProcStat {
  /** R, S, D, Z (zombie: exited, not yet reaped), T… */
  readonly state: string;
  readonly ppid: number;
  /** The process group id. */
  readonly pgrp: number;
  /** CPU time in user and kernel mode, in clock ticks. */
  readonly utime: number;
  readonly stime: number;
  /** Start time in clock ticks since boot: with the pid, the identity of a process. */
  readonly start: number;
}

/** `/proc/<pid>/stat`, parsed; undefined when there is no such process (or no /proc). */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
  // fields[0] is field 3 of proc(5).
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const field = (n: number) => Number(fields[n - 3]);
  return {
    state: fields[0] ?? '',
    ppid: field(4),
    pgrp: field(5),
    utime: field(14),
    stime: field(15),
    start: field(22),
  };
}

/** CPU time (user + system, all threads) a process has used so far, in ms; undefined when gone. */
export function cpuMsOf(pid: number): number | undefined {
  const stat = procStat(pid);
  return stat && ((stat.utime + stat.stime) * 1000) / clockTicksPerSecond();
}

let ticksPerSecond: number | undefined;
/** The unit of /proc's CPU times (USER_HZ), as the system states it. */
function clockTicksPerSecond(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  return ticksPerSecond;
}

/** A process's command line (arguments separated by NUL); undefined when unknown. */
export function commandLineOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * The value of `name` in the environment a process was started with
 * (`/proc/<pid>/environ`); undefined when unset or unreadable (not ours, or no /proc).
 */
export function environmentValueOf(pid: number, name: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch {
    return undefined;
  }
  const prefix = `${name}=`;
  return text
    .split('\0')
    .find((entry) => entry.startsWith(prefix))
    ?.slice(prefix.length);
}

/**
 * Whether `pid` is the very process recorded earlier: the same start time and, in its
 * environment, the marker its starter set. A pid read from a file or an event proves
 * nothing by itself (pids are reused); these two together do. Never pid 0 or 1.
 */
export function isMarkedProcess(
  pid: number,
  start: number,
  marker: { readonly name: string; readonly value: string },
): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 1) return false;
  const stat = procStat(pid);
  return (
    stat !== undefined &&
    stat.state !== 'Z' &&
    stat.start === start &&
    environmentValueOf(pid, marker.name) === marker.value
  );
}

/** A process's resident set size in bytes (VmRSS); undefined when unknown. */
export function residentBytesOf(pid: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(text)?.[1];
  return kib === undefined ? undefined : Number(kib) * 1024;
}

/** Whether a process with this pid exists (EPERM: it does, but is not ours). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether any process of the group `pgid` exists. */
export function isGroupAlive(pgid: number): boolean {
  return isAlive(-pgid);
}
