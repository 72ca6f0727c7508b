/** Backing off: a delay that doubles with each failure in a row, up to a cap. */

export interface ExponentialBackoff {
  /** The first delay. */
  readonly baseMs: number;
  /** No delay is longer. */
  readonly maxMs: number;
}

/** `baseMs × 2^n`, at most `maxMs`: the delay after n doublings (0: the first delay). */
export function cappedExponential(backoff: ExponentialBackoff, n: number): number {
  return Math.min(backoff.baseMs * 2 ** n, backoff.maxMs);
}
