/**
 * Stopping a process: a signal, a bounded wait, then SIGKILL, so a wedged process can
 * never hang whoever stops it.
 */
import { isAlive, isGroupAlive, procStat } from './proc.js';
import { sleep } from './sleep.js';

/** How often the process table is looked at while waiting. */
const POLL_MS = 25;
/** A SIGKILLed process is gone within milliseconds; past this, stop gives up waiting. */
const KILLED_WAIT_MS = 10_000;

export interface StopTarget {
  readonly pid: number;
  /** Signal the process group `pid` leads, so that nothing the process started outlives it. */
  readonly group?: boolean;
  /**
   * Settles when the process has exited, for a child of ours (its 'exit' event): an
   * exited child is a zombie, still in the process table, until Node reaps it.
   */
  readonly exited?: Promise<unknown>;
  /**
   * The process's start time (`procStat(pid).start`), for a process that is not our child:
   * once its pid names another process, it counts as gone and that pid is never signalled.
   */
  readonly start?: number;
}

export interface StopResult {
  /** SIGKILL was needed: the process did not exit within the timeout. */
  readonly killed: boolean;
}

/**
 * Sends `signal` to the process (or its group), waits up to `timeoutMs` for it to be gone,
 * then SIGKILLs it and waits for that. Resolves at once when it is gone already.
 */
export async function stopProcess(
  target: StopTarget,
  signal: NodeJS.Signals,
  timeoutMs: number,
): Promise<StopResult> {
  if (!isSignallable(target.pid)) return { killed: false };
  let exited = target.exited === undefined;
  void target.exited?.then(
    () => {
      exited = true;
    },
    () => {
      exited = true;
    },
  );
  // An `exited` that has settled already is seen after one turn of the microtask queue.
  await Promise.resolve();
  const gone = () => exited && !exists(target) && !(target.group && isGroupAlive(target.pid));
  if (gone()) return { killed: false };
  signalProcess(target, signal);
  if (await waitUntil(gone, timeoutMs)) return { killed: false };
  signalProcess(target, 'SIGKILL');
  await waitUntil(gone, KILLED_WAIT_MS);
  return { killed: true };
}

/**
 * Sends `signal` to the process, or to its group (falling back to the process alone when
 * it leads none). Returns whether it was delivered: a process that is gone (or not ours)
 * is no error.
 */
export function signalProcess(target: StopTarget, signal: NodeJS.Signals): boolean {
  if (!isSignallable(target.pid)) return false;
  const ids = target.group ? [-target.pid, target.pid] : [target.pid];
  for (const id of ids) {
    if (id > 0 && target.start !== undefined && !exists(target)) continue;
    try {
      process.kill(id, signal);
      return true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ESRCH' && code !== 'EPERM') throw error;
    }
  }
  return false;
}

/**
 * Pid 0 and negative pids address groups or every process, and pid 1 is init: none of
 * them is ever a process Halyard started, whatever a file or an event says.
 */
function isSignallable(pid: number): boolean {
  return Number.isSafeInteger(pid) && pid > 1;
}

/** Whether the target process itself (not its group) still exists: a zombie does. */
function exists(target: StopTarget): boolean {
  return target.start === undefined
    ? isAlive(target.pid)
    : procStat(target.pid)?.start === target.start;
}

async function waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() >= deadline) return false;
    await sleep(POLL_MS);
  }
  return true;
}
