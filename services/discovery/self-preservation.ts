/**
 * When many leases lapse within one window, the bus or the network is the likelier
 * culprit than the instances: hold them instead of emptying the registry, and let
 * expiry take its course again once renewals come back.
 *
 * The window must span a whole lease: a healthy fleet's renewals are spread over the
 * renewal interval, so a broken bus makes leases lapse over that spread, not at one
 * instant. Entries that lapsed earlier in the window therefore count as lapsed too.
 */
export interface SelfPreservationPolicy {
  /** Share of entries lapsing within one window above which eviction is held (default 0.15). */
  readonly threshold: number;
  /**
   * Fewer lapsed entries than this are always evicted: in a small fleet one dead
   * instance is a large share, and it is far likelier dead than the bus is broken.
   */
  readonly minLapsed: number;
  /** The window; default one default lease. */
  readonly windowMs: number;
}

export const DEFAULT_SELF_PRESERVATION: SelfPreservationPolicy = {
  threshold: 0.15,
  minLapsed: 3,
  windowMs: 15_000,
};

export class SelfPreservation {
  private removals: Array<{ at: number; count: number }> = [];
  private held = false;

  constructor(private readonly policy: SelfPreservationPolicy) {}

  get holding(): boolean {
    return this.held;
  }

  /** Whether to hold lapsed leases, given entries lapsed now and entries live now. */
  decide(lapsed: number, live: number, now = Date.now()): boolean {
    this.removals = this.removals.filter((p) => p.at > now - this.policy.windowMs);
    const removed = this.removals.reduce((sum, p) => sum + p.count, 0);
    const gone = lapsed + removed;
    this.held = gone >= this.policy.minLapsed && gone / (gone + live) > this.policy.threshold;
    return this.held;
  }

  recordRemoved(count: number, now = Date.now()): void {
    if (count > 0) this.removals.push({ at: now, count });
  }
}
