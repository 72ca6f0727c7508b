/**
 * Removes lapsed values from a bucket. Several replicas may sweep at once: removal is
 * idempotent, and a mistake heals (an instance whose lease was removed by a stale
 * decision is told NOT_FOUND on its next renewal and registers again). Before each
 * removal the authoritative value is read again, so a renewal that raced the sweep is
 * almost never lost.
 */
import { type Logger, LogIds } from './log.js';
import { busMetrics } from './metrics.js';
import type { KvStore } from './store.js';
import type { LocalView } from './view.js';

export interface Lapsed<T> {
  readonly key: string;
  readonly value: T;
}

export interface SweepOptions<T> {
  /** How long past its lapse a value is left alone, for clock skew between hosts. */
  readonly graceMs: number;
  /**
   * Called with what would be removed; returning false keeps everything this round
   * (e.g. discovery's self-preservation when many leases lapse at once).
   */
  readonly allow?: (lapsed: readonly Lapsed<T>[], liveCount: number) => boolean;
}

export interface SweepResult {
  readonly removed: readonly string[];
  readonly held: boolean;
}

export async function sweep<T>(
  /** A local view, or any reader that knows which values lapsed. */
  view: Pick<LocalView<T>, 'lapsedFor' | 'size'>,
  store: KvStore<T>,
  options: SweepOptions<T>,
  logger: Logger,
): Promise<SweepResult> {
  const bucket = store.spec.name;
  const candidates = view.lapsedFor(options.graceMs);
  if (candidates.length === 0) return { removed: [], held: false };
  if (options.allow && !options.allow(candidates, view.size)) {
    logger.warn(
      { msgId: LogIds.sweepHeld, bucket, lapsed: candidates.length, live: view.size },
      'sweep held back',
    );
    return { removed: [], held: true };
  }
  const removed: string[] = [];
  const cutoff = Date.now() - options.graceMs;
  for (const { key } of candidates) {
    const current = await store.get(key);
    const expiresAt = current && store.spec.expiresAt(current.value);
    if (current && (expiresAt === undefined || expiresAt > cutoff)) continue;
    await store.remove(key);
    removed.push(key);
  }
  if (removed.length > 0) {
    busMetrics.swept.inc({ bucket }, removed.length);
    logger.info({ msgId: LogIds.swept, bucket, removed: removed.length }, 'lapsed values removed');
  }
  return { removed, held: false };
}
