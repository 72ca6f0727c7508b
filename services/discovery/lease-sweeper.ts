/**
 * Every replica sweeps lapsed registrations on a timer. Sweeps are idempotent (purging
 * a removed key is harmless) and a mistaken removal heals: the instance's next renewal is
 * told NOT_FOUND and it registers again.
 */
import type { Logger } from 'pino';
import type { KvStore, LocalView, ServiceInstance } from '../../bus/index.js';
import { sweep } from '../../bus/index.js';
import { DiscoveryEventKind, type DiscoveryEvents } from './events.js';
import { LogIds } from './log-ids.js';
import { discoveryMetrics } from './metrics.js';
import { SelfPreservation, type SelfPreservationPolicy } from './self-preservation.js';

export interface LeaseSweeperOptions {
  readonly replicaId: string;
  readonly intervalMs: number;
  /** Left alone this long past its lapse, for clock skew between hosts. */
  readonly graceMs: number;
  readonly selfPreservation: SelfPreservationPolicy;
}

export class LeaseSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private held = false;
  private readonly preservation: SelfPreservation;

  constructor(
    private readonly view: LocalView<ServiceInstance>,
    private readonly store: KvStore<ServiceInstance>,
    private readonly events: DiscoveryEvents,
    private readonly options: LeaseSweeperOptions,
    private readonly logger: Logger,
  ) {
    this.preservation = new SelfPreservation(options.selfPreservation);
  }

  /** Whether lapsed entries are currently held back from eviction. */
  get holding(): boolean {
    return this.held;
  }

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.sweepOnce().finally(() => {
        this.running = undefined;
      });
    }, this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  async sweepOnce(): Promise<void> {
    const { replicaId } = this.options;
    const lapsed = new Map<string, ServiceInstance>();
    let liveCount = 0;
    try {
      const result = await sweep(
        this.view,
        this.store,
        {
          graceMs: this.options.graceMs,
          allow: (candidates, live) => {
            for (const c of candidates) lapsed.set(c.key, c.value);
            liveCount = live;
            // Lapsed within the grace period too: they lapsed in this window as well.
            return !this.preservation.decide(this.view.lapsedFor(0).length, live);
          },
        },
        this.logger,
      );
      if (result.held) {
        this.enter(this.view.lapsedFor(0).length, liveCount);
        return;
      }
      // No candidates at all: nothing lapsed any more, renewals are back.
      if (lapsed.size === 0) this.preservation.decide(0, this.view.size);
      if (!this.preservation.holding) this.exit();
      this.preservation.recordRemoved(result.removed.length);
      if (result.removed.length === 0) return;
      discoveryMetrics.expired.inc({ replica: replicaId }, result.removed.length);
      for (const key of result.removed) {
        const instance = lapsed.get(key);
        if (!instance) continue;
        this.logger.info(
          {
            msgId: LogIds.leasesExpired,
            serviceId: instance.serviceId,
            instanceId: instance.instanceId,
            renewedAtMs: instance.renewedAtMs,
          },
          'lease lapsed: instance removed',
        );
        // Same id from every replica that removed it: the stream stores the event once.
        this.events.emit(
          DiscoveryEventKind.LEASE_EXPIRED,
          instance,
          `not renewed for ${instance.leaseSeconds} s`,
          String(instance.renewedAtMs),
        );
      }
    } catch (error) {
      this.logger.error(
        { msgId: LogIds.sweepFailed, err: error },
        'lease sweep failed; next round will retry',
      );
    }
  }

  private enter(lapsed: number, live: number): void {
    if (this.held) return;
    this.held = true;
    const detail = `${lapsed} of ${lapsed + live} leases lapsed in one sweep window`;
    discoveryMetrics.selfPreservation.set({ replica: this.options.replicaId }, 1);
    this.logger.warn(
      { msgId: LogIds.selfPreservationEntered, lapsed, live },
      `self-preservation entered: ${detail}; entries kept`,
    );
    this.events.emit(DiscoveryEventKind.SELF_PRESERVATION_ENTERED, {}, detail, String(Date.now()));
  }

  private exit(): void {
    if (!this.held) return;
    this.held = false;
    discoveryMetrics.selfPreservation.set({ replica: this.options.replicaId }, 0);
    this.logger.info(
      { msgId: LogIds.selfPreservationExited },
      'self-preservation exited: sweeping resumes',
    );
    this.events.emit(DiscoveryEventKind.SELF_PRESERVATION_EXITED, {}, '', String(Date.now()));
  }
}
