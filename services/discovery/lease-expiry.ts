/**
 * What a replica does when leases lapse. The server removes a lapsed registration
 * (per-message TTL) and every replica's view hears it; each replica then reports the
 * expiry (LEASE_EXPIRED, stored once whichever replicas publish it) — unless many leases
 * lapsed within one window. Then the bus or the network is the likelier culprit, and
 * the replica enters self-preservation: it writes each lapsed registration back with a
 * fresh lease (compare-and-set, so replicas do not double the work), gateways keep
 * routing to those instances (passive ejection handles the dead ones), and their
 * renewals are accepted without a re-registration. Once leases stop lapsing en masse,
 * it exits and expiry takes its course again.
 */
import type { Logger } from 'pino';
import type { LocalView, ServiceInstance, ViewChange } from '../../bus/index.js';
import { Keys } from '../../bus/index.js';
import { DiscoveryEventKind, type DiscoveryEvents } from './events.js';
import { LogIds } from './log-ids.js';
import { discoveryMetrics } from './metrics.js';
import { SelfPreservation, type SelfPreservationPolicy } from './self-preservation.js';

export interface LeaseExpiryOptions {
  readonly replicaId: string;
  /** How often lapses are decided on (reported or held). */
  readonly checkIntervalMs: number;
  /**
   * How long a lapse waits before it is decided on, so that leases lapsing together
   * (renewals are spread over the renewal interval) are counted together.
   */
  readonly settleMs: number;
  readonly selfPreservation: SelfPreservationPolicy;
}

/** The registry's side of holding a lapsed lease. */
export interface LeaseHolder {
  /** Writes the registration back with a fresh lease unless it is live again. */
  hold(instance: ServiceInstance): Promise<void>;
}

export class LeaseExpiry {
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => void) | undefined;
  private readonly preservation: SelfPreservation;
  /** Lapsed registrations held during self-preservation, by bucket key. */
  private readonly held = new Map<string, ServiceInstance>();
  /** Lapses not decided on yet, by bucket key. */
  private readonly pending = new Map<string, { instance: ServiceInstance; at: number }>();
  private readonly holding = new Set<Promise<void>>();

  constructor(
    private readonly view: LocalView<ServiceInstance>,
    private readonly holder: LeaseHolder,
    private readonly events: DiscoveryEvents,
    private readonly options: LeaseExpiryOptions,
    private readonly logger: Logger,
  ) {
    this.preservation = new SelfPreservation(options.selfPreservation);
  }

  /** Whether lapsed registrations are being held. */
  get preserving(): boolean {
    return this.preservation.holding;
  }

  /** The registration held for an instance whose lease lapsed, while self-preserving. */
  heldCopy(serviceId: string, instanceId: string): ServiceInstance | undefined {
    return this.preserving ? this.held.get(Keys.registry(serviceId, instanceId)) : undefined;
  }

  start(): void {
    this.unlisten = this.view.onChange((change) => this.onChange(change));
    this.timer = setInterval(() => this.check(), this.options.checkIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.unlisten?.();
    await Promise.allSettled(this.holding);
  }

  private onChange(change: ViewChange<ServiceInstance>): void {
    if (change.op === 'put') this.pending.delete(change.key);
    else if (change.reason === 'expired') {
      this.pending.set(change.key, { instance: change.previous, at: Date.now() });
    }
  }

  /** Decides on settled lapses, counting every lapse seen so far; exits when they stop. */
  private check(now = Date.now()): void {
    const due = [...this.pending].filter(([, lapse]) => lapse.at <= now - this.options.settleMs);
    const wasPreserving = this.preserving;
    const preserving = this.preservation.decide(this.pending.size, this.view.size);
    if (preserving && !wasPreserving) this.enter(this.pending.size);
    if (!preserving && wasPreserving) this.exit();
    for (const [key, { instance }] of due) {
      this.pending.delete(key);
      this.preservation.recordRemoved(1, now);
      if (preserving) this.hold(key, instance);
      else this.report(instance);
    }
  }

  private hold(key: string, instance: ServiceInstance): void {
    this.held.set(key, instance);
    discoveryMetrics.held.inc({ replica: this.options.replicaId });
    const holding = this.holder.hold(instance).catch((error: unknown) => {
      this.logger.error(
        {
          msgId: LogIds.holdFailed,
          serviceId: instance.serviceId,
          instanceId: instance.instanceId,
          err: error,
        },
        'a lapsed registration could not be held; its instance registers again on its next renewal',
      );
    });
    this.holding.add(holding);
    void holding.finally(() => this.holding.delete(holding));
  }

  private report(instance: ServiceInstance): void {
    discoveryMetrics.expired.inc({ replica: this.options.replicaId });
    this.logger.info(
      {
        msgId: LogIds.leasesExpired,
        serviceId: instance.serviceId,
        instanceId: instance.instanceId,
        renewedAtMs: instance.renewedAtMs,
      },
      'lease lapsed: instance removed',
    );
    // Same id from every replica: the stream stores the event once.
    this.events.emit(
      DiscoveryEventKind.LEASE_EXPIRED,
      instance,
      `not renewed for ${instance.leaseSeconds} s`,
      String(instance.renewedAtMs),
    );
  }

  private enter(lapsed: number): void {
    const live = this.view.size;
    const detail = `${lapsed} of ${lapsed + live} leases lapsed in one window`;
    discoveryMetrics.selfPreservation.set({ replica: this.options.replicaId }, 1);
    this.logger.warn(
      { msgId: LogIds.selfPreservationEntered, lapsed, live },
      `self-preservation entered: ${detail}; lapsed registrations held`,
    );
    this.events.emit(DiscoveryEventKind.SELF_PRESERVATION_ENTERED, {}, detail, String(Date.now()));
  }

  private exit(): void {
    this.held.clear();
    discoveryMetrics.selfPreservation.set({ replica: this.options.replicaId }, 0);
    this.logger.info(
      { msgId: LogIds.selfPreservationExited },
      'self-preservation exited: lapsed leases expire again',
    );
    this.events.emit(DiscoveryEventKind.SELF_PRESERVATION_EXITED, {}, '', String(Date.now()));
  }
}
