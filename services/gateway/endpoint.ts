/**
 * One registered instance as the gateway sees it: its latest registry entry, its
 * HTTP/2 session and its ejection state. Endpoints outlive routing-table rebuilds, so
 * sessions and ejections survive registry changes of other instances.
 */
import type { ServiceInstance } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import type { Upstream } from './upstream.js';

const { InstanceStatus } = halyard.discovery.v1;

export class Endpoint {
  /** UP and not ejected; kept as a field so the balancer reads, never computes. */
  private isAvailable = false;
  private isEjected = false;
  private failures = 0;
  /** Ejections since the instance last served a call: the next one lasts 2^n × base. */
  private ejections = 0;
  private ejectionTimer: NodeJS.Timeout | undefined;

  constructor(
    private entry: ServiceInstance,
    readonly upstream: Upstream,
  ) {
    this.refresh();
  }

  get instance(): ServiceInstance {
    return this.entry;
  }

  get id(): string {
    return this.entry.instanceId;
  }

  get serviceId(): string {
    return this.entry.serviceId;
  }

  get available(): boolean {
    return this.isAvailable;
  }

  get ejected(): boolean {
    return this.isEjected;
  }

  /** Why it takes calls or not, in words: `UP`, `DOWN`, `DRAINING`, or ejected. */
  get state(): string {
    return this.isEjected ? 'ejected after connection failures' : statusName(this.entry.status);
  }

  /** Connection-level failures in a row. */
  get consecutiveFailures(): number {
    return this.failures;
  }

  get ejectionLevel(): number {
    return this.ejections;
  }

  update(instance: ServiceInstance): void {
    this.entry = instance;
    this.refresh();
  }

  /** The instance answered a call: its failure streak and ejection history are over. */
  served(): void {
    this.failures = 0;
    this.ejections = 0;
  }

  /** A connection-level failure; returns how many happened in a row. */
  failed(): number {
    return ++this.failures;
  }

  /** No calls for `ms`, then `onReturn` (unless `readmit` came first). */
  eject(ms: number, onReturn: () => void): void {
    this.ejections++;
    this.isEjected = true;
    this.refresh();
    this.ejectionTimer = setTimeout(onReturn, ms);
    this.ejectionTimer.unref();
  }

  /** Ends an ejection: calls come again, with a fresh failure streak. */
  readmit(): void {
    clearTimeout(this.ejectionTimer);
    this.ejectionTimer = undefined;
    this.isEjected = false;
    this.failures = 0;
    this.refresh();
  }

  private refresh(): void {
    this.isAvailable = this.entry.status === InstanceStatus.UP && !this.isEjected;
  }
}

function statusName(status: number): string {
  return InstanceStatus[status] ?? `status ${status}`;
}
