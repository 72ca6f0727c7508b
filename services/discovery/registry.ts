/**
 * The registry's rules, independent of gRPC: what a registration, renewal,
 * deregistration and status change do to the `halyard-registry` bucket. Writes are
 * last-writer-wins (nats-server 2.9 does not enforce compare-and-set on R3 streams);
 * every decision reads the authoritative value first and is safe to repeat.
 */

import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Keys, type KvStore, type LocalView, type ServiceInstance } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { RegistryError } from './errors.js';
import { DiscoveryEventKind, type DiscoveryEvents } from './events.js';
import { LogIds } from './log-ids.js';
import {
  checkServiceFilter,
  checkStatus,
  type InstanceRef,
  type LeaseBounds,
  renewIntervalSeconds,
  validateRef,
  validateRegistration,
} from './validation.js';

const { InstanceStatus } = halyard.discovery.v1;

export interface RegistryOptions {
  readonly store: KvStore<ServiceInstance>;
  readonly view: LocalView<ServiceInstance>;
  readonly events: DiscoveryEvents;
  readonly leases: LeaseBounds;
  readonly logger: Logger;
  /**
   * True while self-preservation holds lapsed entries: their renewals are accepted,
   * so instances cut off by a bus or network problem come back without re-registering.
   */
  readonly holdingLapsed: () => boolean;
}

export interface Registration {
  readonly instance: ServiceInstance;
  readonly renewIntervalSeconds: number;
}

const expiresAt = (i: ServiceInstance) => i.renewedAtMs + i.leaseSeconds * 1000;
const describeRef = (ref: InstanceRef) => `instance ${ref.serviceId}/${ref.instanceId}`;

export class Registry {
  constructor(private readonly options: RegistryOptions) {}

  get view(): LocalView<ServiceInstance> {
    return this.options.view;
  }

  get leases(): LeaseBounds {
    return this.options.leases;
  }

  async register(raw: Record<string, unknown> | null | undefined): Promise<Registration> {
    const now = Date.now();
    const instance = validateRegistration(raw, this.options.leases, now);
    const current = await this.authoritative(instance);
    const live = current && expiresAt(current) > now;
    if (live && current.address !== instance.address) {
      throw new RegistryError(
        status.ALREADY_EXISTS,
        `instance.instance_id: ${describeRef(instance)} is registered at ${current.address}; deregister it or pick another instance_id`,
        'instance.instance_id',
      );
    }
    // A re-registration of the same instance keeps its original registration time.
    const stored = live ? { ...instance, registeredAtMs: current.registeredAtMs } : instance;
    const revision = await this.options.store.put(stored);
    this.options.logger.info(
      {
        msgId: live ? LogIds.reregistered : LogIds.registered,
        serviceId: stored.serviceId,
        instanceId: stored.instanceId,
        address: stored.address,
        leaseSeconds: stored.leaseSeconds,
      },
      live ? 'instance registered again' : 'instance registered',
    );
    this.options.events.emit(
      DiscoveryEventKind.REGISTERED,
      stored,
      `at ${stored.address}, lease ${stored.leaseSeconds} s`,
      String(revision),
    );
    return { instance: stored, renewIntervalSeconds: renewIntervalSeconds(stored.leaseSeconds) };
  }

  /** Extends the lease; NOT_FOUND tells the instance to register again. */
  async renew(rawRef: Record<string, unknown> | null | undefined): Promise<number> {
    const ref = validateRef(rawRef);
    const now = Date.now();
    const current = await this.authoritative(ref);
    if (!current || (expiresAt(current) <= now && !this.options.holdingLapsed())) {
      throw new RegistryError(
        status.NOT_FOUND,
        `${describeRef(ref)} is not registered (its lease lapsed or it was removed); register again`,
      );
    }
    const renewed = { ...current, renewedAtMs: now };
    await this.options.store.put(renewed);
    return expiresAt(renewed);
  }

  async deregister(rawRef: Record<string, unknown> | null | undefined): Promise<void> {
    const ref = validateRef(rawRef);
    const current = await this.authoritative(ref);
    if (!current) {
      throw new RegistryError(status.NOT_FOUND, `${describeRef(ref)} is not registered`);
    }
    await this.options.store.remove(Keys.registry(ref.serviceId, ref.instanceId));
    this.options.logger.info(
      { msgId: LogIds.deregistered, serviceId: ref.serviceId, instanceId: ref.instanceId },
      'instance deregistered',
    );
    this.options.events.emit(DiscoveryEventKind.DEREGISTERED, ref, '', String(current.renewedAtMs));
  }

  async setStatus(
    rawRef: Record<string, unknown> | null | undefined,
    rawStatus: unknown,
    reason = 'requested',
  ): Promise<ServiceInstance> {
    const ref = validateRef(rawRef);
    const next = checkStatus(rawStatus, 'status') as ServiceInstance['status'];
    const current = await this.authoritative(ref);
    if (!current || expiresAt(current) <= Date.now()) {
      throw new RegistryError(status.NOT_FOUND, `${describeRef(ref)} is not registered`);
    }
    if (current.status === next) return current;
    const updated = { ...current, status: next };
    const revision = await this.options.store.put(updated);
    this.options.logger.info(
      {
        msgId: LogIds.statusChanged,
        serviceId: ref.serviceId,
        instanceId: ref.instanceId,
        from: InstanceStatus[current.status],
        to: InstanceStatus[next],
        reason,
      },
      'instance status changed',
    );
    this.options.events.emit(
      DiscoveryEventKind.STATUS_CHANGED,
      updated,
      `${InstanceStatus[current.status]} → ${InstanceStatus[next]}: ${reason}`,
      String(revision),
    );
    return updated;
  }

  /** Writes an instance discovery itself vouches for (a static definition), keeping its status. */
  async vouch(definition: ServiceInstance): Promise<void> {
    const now = Date.now();
    const key = Keys.registry(definition.serviceId, definition.instanceId);
    const current = this.options.view.get(key);
    const status = current?.address === definition.address ? current.status : definition.status;
    await this.options.store.put({
      ...definition,
      status,
      registeredAtMs: current?.registeredAtMs ?? now,
      renewedAtMs: now,
    });
  }

  /** Live instances, from the local view (no bus round trip), ordered by key. */
  list(serviceId: string): ServiceInstance[] {
    checkServiceFilter(serviceId);
    const out: Array<[string, ServiceInstance]> = [];
    for (const entry of this.options.view.entries()) {
      if (serviceId === '' || entry[1].serviceId === serviceId) out.push(entry);
    }
    return out.sort(([a], [b]) => (a < b ? -1 : 1)).map(([, instance]) => instance);
  }

  private async authoritative(ref: InstanceRef): Promise<ServiceInstance | undefined> {
    return (await this.options.store.get(Keys.registry(ref.serviceId, ref.instanceId)))?.value;
  }
}
