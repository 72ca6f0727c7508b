/**
 * One `halyard up` per data dir: `<data-dir>/up.lock` names the running one (pid, start
 * time, servers). A lock whose process is gone is stale and taken over; a second `up`
 * is refused, naming the first.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isAlive, procStat } from '../../common/proc.js';
import { CliLogIds as Ids, type Logger } from '../log.js';
import { UpError } from './errors.js';

/** Where `up` keeps its data by default, and where the other commands look for a running one. */
export const DEFAULT_DATA_DIR = './.halyard';
const LOCK_FILE = 'up.lock';

export interface LockInfo {
  readonly pid: number;
  /** The process's start time (clock ticks since boot), so a reused pid is not mistaken for it. */
  readonly startTicks?: number;
  readonly startedAt: string;
  readonly nodes: number;
  readonly servers: string[];
  readonly monitoring: string[];
}

/** What the `up` of `dataDir` wrote in its lock, if there is one (it may be stale). */
export function readLock(dataDir: string): LockInfo | undefined {
  return readLockFile(path.join(dataDir, LOCK_FILE));
}

export class UpLock {
  readonly file: string;
  #held = false;

  constructor(
    readonly dataDir: string,
    private readonly log: Logger,
  ) {
    this.file = path.join(dataDir, LOCK_FILE);
  }

  /**
   * Takes the lock for this process, with what other commands need to know of it.
   * Throws an UpError naming the running `up` when there is one.
   */
  acquire(info: Omit<LockInfo, 'pid' | 'startTicks' | 'startedAt'>): void {
    const holder = this.#acquire({
      pid: process.pid,
      startTicks: procStat(process.pid)?.start,
      startedAt: new Date().toISOString(),
      ...info,
    });
    if (holder) {
      throw new UpError(
        Ids.alreadyRunning,
        `halyard up is already running for ${this.dataDir} (pid ${holder.pid}, since ${holder.startedAt}; ` +
          `NATS ${holder.servers.join(',')}; monitoring ${holder.monitoring.join(' ')}). ` +
          `Use that one, or stop it first (Ctrl-C in its terminal, or kill ${holder.pid}).`,
      );
    }
  }

  /** Takes the lock, or returns the live holder. A stale lock (its process is gone) is taken over. */
  #acquire(info: LockInfo): LockInfo | undefined {
    fs.mkdirSync(this.dataDir, { recursive: true });
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
      const holder = readLockFile(this.file);
      if (holder && holder.pid !== process.pid && isRunning(holder)) return holder;
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
    if (readLockFile(this.file)?.pid === process.pid) fs.rmSync(this.file, { force: true });
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

function readLockFile(file: string): LockInfo | undefined {
  try {
    const info = JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
    return typeof info.pid === 'number' ? info : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the lock's process still runs (the same process: a reused pid does not count). */
function isRunning(holder: LockInfo): boolean {
  if (!isAlive(holder.pid)) return false;
  const ticks = procStat(holder.pid)?.start;
  return holder.startTicks === undefined || ticks === undefined || ticks === holder.startTicks;
}
