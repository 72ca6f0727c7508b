/**
 * Removes lapsed values from a bucket. Several replicas may sweep at once: purging is
 * idempotent, and a mistake heals (an instance whose lease was purged by a stale
 * decision is told NOT_FOUND on its next renewal and registers again). Before each
 * purge the authoritative value is read again, so a renewal that raced the sweep is
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
   * Called with what would be purged; returning false keeps everything this round
   * (e.g. discovery's self-preservation when many leases lapse at once).
   */
  readonly allow?: (lapsed: readonly Lapsed<T>[], liveCount: number) => boolean;
}

export interface SweepResult {
  readonly purged: readonly string[];
  readonly held: boolean;
}

export async function sweep<T>(
  view: LocalView<T>,
  store: KvStore<T>,
  options: SweepOptions<T>,
  logger: Logger,
): Promise<SweepResult> {
  const bucket = store.spec.name;
  const candidates = view.lapsedFor(options.graceMs);
  if (candidates.length === 0) return { purged: [], held: false };
  if (options.allow && !options.allow(candidates, view.size)) {
    logger.warn(
      { msgId: LogIds.sweepHeld, bucket, lapsed: candidates.length, live: view.size },
      'sweep held back',
    );
    return { purged: [], held: true };
  }
  const purged: string[] = [];
  const cutoff = Date.now() - options.graceMs;
  for (const { key } of candidates) {
    const current = await store.get(key);
    const expiresAt = current && store.spec.expiresAt(current.value);
    if (current && (expiresAt === undefined || expiresAt > cutoff)) continue;
    await store.purge(key);
    purged.push(key);
  }
  if (purged.length > 0) {
    busMetrics.purged.inc({ bucket }, purged.length);
    logger.info({ msgId: LogIds.swept, bucket, purged: purged.length }, 'lapsed values purged');
  }
  return { purged, held: false };
}
