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
  available = false;
  ejected = false;
  consecutiveFailures = 0;
  /** Ejections since the instance last served a call: the next ejection lasts 2^level × base. */
  ejectionLevel = 0;
  ejectionTimer: NodeJS.Timeout | undefined;

  constructor(
    public instance: ServiceInstance,
    readonly upstream: Upstream,
  ) {
    this.refresh();
  }

  get id(): string {
    return this.instance.instanceId;
  }

  get serviceId(): string {
    return this.instance.serviceId;
  }

  update(instance: ServiceInstance): void {
    this.instance = instance;
    this.refresh();
  }

  refresh(): void {
    this.available = this.instance.status === InstanceStatus.UP && !this.ejected;
  }
}

export function statusName(status: number): string {
  return InstanceStatus[status] ?? `status ${status}`;
}
