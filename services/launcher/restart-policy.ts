/**
 * When to restart a failed child: the n-th consecutive failure waits the n-th
 * interval; past the last interval the launcher gives up. A child that stayed up for
 * `minUptime` was healthy, so its failure count starts again from zero.
 */
export interface RestartPolicy {
  readonly intervalsMs: readonly number[];
  readonly minUptimeMs: number;
}

export type RestartDecision =
  | { readonly action: 'restart'; readonly attempt: number; readonly delayMs: number }
  | { readonly action: 'give-up'; readonly attempt: number };

/** `failures` counts consecutive failures before this one; returns the decision and the new count. */
export function afterExit(
  policy: RestartPolicy,
  failures: number,
  uptimeMs: number,
): { decision: RestartDecision; failures: number } {
  const count = (uptimeMs >= policy.minUptimeMs ? 0 : failures) + 1;
  const delayMs = policy.intervalsMs[count - 1];
  return {
    failures: count,
    decision:
      delayMs === undefined
        ? { action: 'give-up', attempt: count }
        : { action: 'restart', attempt: count, delayMs },
  };
}
