/**
 * When many leases lapse in the same sweep window, the bus or the network is the
 * likelier culprit than the instances: hold them back from eviction instead of
 * emptying the registry, and resume sweeping once renewals come back.
 */
export interface SelfPreservationPolicy {
  /** Share of entries lapsing in one sweep window above which eviction is held (default 0.15). */
  readonly threshold: number;
  /**
   * Fewer lapsed entries than this are always evicted: in a small fleet one dead
   * instance is a large share, and it is far likelier dead than the bus is broken.
   */
  readonly minLapsed: number;
}

export const DEFAULT_SELF_PRESERVATION: SelfPreservationPolicy = { threshold: 0.15, minLapsed: 3 };

export function shouldHold(lapsed: number, live: number, policy: SelfPreservationPolicy): boolean {
  if (lapsed < policy.minLapsed) return false;
  return lapsed / (lapsed + live) > policy.threshold;
}
