/**
 * The registry's rules, independent of gRPC: what a registration, renewal,
 * deregistration and status change do to the `halyard-registry` bucket. Every decision
 * writes with compare-and-set on the revision of the value it decided on (read from the
 * leader, or for a renewal from the local view first), so two replicas deciding at once
 * cannot both win: the loser decides again on what won.
 */

import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  KeyChangedError,
  KeyExistsError,
  Keys,
  type KvStore,
  type LocalView,
  type Revisioned,
  type ServiceInstance,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import type { AddressPolicy } from './addresses.js';
import { invalid, RegistryError } from './errors.js';
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
  /** Where instances may be registered. */
  readonly addresses: AddressPolicy;
  readonly logger: Logger;
  /**
   * The registration of an instance whose lease lapsed while self-preservation holds
   * lapsed leases: its renewal is accepted, so instances cut off by a bus or network
   * problem come back without re-registering.
   */
  readonly heldCopy: (serviceId: string, instanceId: string) => ServiceInstance | undefined;
}

export interface Registration {
  readonly instance: ServiceInstance;
  readonly renewIntervalSeconds: number;
}

const expiresAt = (i: ServiceInstance) => i.renewedAtMs + i.leaseSeconds * 1000;
/** Decisions retried on a value that changed under them before the caller is told ABORTED. */
const DECISION_ATTEMPTS = 5;
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
    this.checkAddress(instance);
    this.checkOwnership(instance, now);
    const { stored, revision, live } = await this.decide(instance, async (entry) => {
      const current = entry?.value;
      const live = current !== undefined && expiresAt(current) > now;
      if (live && current.address !== instance.address) {
        throw new RegistryError(
          status.ALREADY_EXISTS,
          `instance.instance_id: ${describeRef(instance)} is registered at ${current.address}; deregister it or pick another instance_id`,
          'instance.instance_id',
        );
      }
      // A re-registration of the same instance keeps its original registration time.
      const stored = live ? { ...instance, registeredAtMs: current.registeredAtMs } : instance;
      return { stored, revision: await this.write(stored, entry), live };
    });
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

  /**
   * Extends the lease; NOT_FOUND tells the instance to register again.
   *
   * A renewal first writes over the value this replica's view holds, compare-and-set
   * on its revision: when the write lands, that value was the authoritative one, so
   * the decision is the one a leader read would have made, for one bus round trip
   * instead of two. A value that changed meanwhile (a deregistration, a status change,
   * a renewal through another replica) fails the compare-and-set and the renewal is
   * decided again on the leader's value.
   */
  async renew(rawRef: Record<string, unknown> | null | undefined): Promise<number> {
    const ref = validateRef(rawRef);
    const now = Date.now();
    const known = this.liveInView(ref, now);
    if (known !== undefined) {
      const renewed = { ...known.value, renewedAtMs: now };
      try {
        await this.options.store.update(renewed, known.revision);
        return expiresAt(renewed);
      } catch (error) {
        if (!(error instanceof KeyChangedError)) throw error;
      }
    }
    return this.decide(ref, async (entry) => {
      const held = this.options.heldCopy(ref.serviceId, ref.instanceId);
      const current = entry?.value ?? held;
      if (!current || (expiresAt(current) <= now && !held)) {
        throw new RegistryError(
          status.NOT_FOUND,
          `${describeRef(ref)} is not registered (its lease lapsed or it was removed); register again`,
        );
      }
      const renewed = { ...current, renewedAtMs: now };
      await this.write(renewed, entry);
      return expiresAt(renewed);
    });
  }

  /** Writes a lapsed registration back with a fresh lease, unless it is live again. */
  async hold(instance: ServiceInstance): Promise<void> {
    await this.decide(instance, async (entry) => {
      const now = Date.now();
      if (entry && expiresAt(entry.value) > now) return;
      await this.write({ ...(entry?.value ?? instance), renewedAtMs: now }, entry);
    });
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
    const decided = await this.decide(ref, async (entry) => {
      const current = entry?.value;
      if (!current || expiresAt(current) <= Date.now()) {
        throw new RegistryError(status.NOT_FOUND, `${describeRef(ref)} is not registered`);
      }
      if (current.status === next) return { current, updated: current, revision: undefined };
      const updated = { ...current, status: next };
      return { current, updated, revision: await this.write(updated, entry) };
    });
    const { current, updated, revision } = decided;
    if (revision === undefined) return current;
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
    this.checkOwnership(definition, now);
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

  /** INVALID_ARGUMENT unless the address is one instances may be registered at. */
  checkAddress(instance: Pick<ServiceInstance, 'address'>): void {
    const refusal = this.options.addresses.refusal(instance.address);
    if (refusal !== undefined) {
      throw invalid('instance.address', `"${instance.address}" may not be registered: ${refusal}`);
    }
  }

  /**
   * FAILED_PRECONDITION when another service id serves one of the instance's gRPC
   * service names: a name is owned by the service id whose live instances claim it,
   * so where a gateway sends a call never depends on which id sorts first.
   */
  private checkOwnership(instance: ServiceInstance, now: number): void {
    if (instance.grpcServices.length === 0) return;
    for (const [, other] of this.options.view.entries()) {
      if (other.serviceId === instance.serviceId || expiresAt(other) <= now) continue;
      const index = instance.grpcServices.findIndex((name) => other.grpcServices.includes(name));
      if (index < 0) continue;
      throw new RegistryError(
        status.FAILED_PRECONDITION,
        `instance.grpc_services[${index}]: ${instance.grpcServices[index]} is owned by service ${other.serviceId} (instance ${other.serviceId}/${other.instanceId}); service ${instance.serviceId} may not claim it`,
        `instance.grpc_services[${index}]`,
      );
    }
  }

  /** The instance's live value and revision as this replica's view holds them. */
  private liveInView(ref: InstanceRef, now: number): Revisioned<ServiceInstance> | undefined {
    const key = Keys.registry(ref.serviceId, ref.instanceId);
    const view = this.options.view;
    const value = view.get(key);
    const revision = view.revision(key);
    if (value === undefined || revision === undefined || expiresAt(value) <= now) return undefined;
    return { key, value, revision };
  }

  private async authoritative(ref: InstanceRef): Promise<ServiceInstance | undefined> {
    return (await this.options.store.get(Keys.registry(ref.serviceId, ref.instanceId)))?.value;
  }

  /**
   * Runs a decision on the authoritative entry of an instance; when the entry changed
   * before the decision's compare-and-set write landed, decides again on the new one.
   */
  private async decide<R>(
    ref: InstanceRef,
    decision: (entry: Revisioned<ServiceInstance> | undefined) => Promise<R>,
  ): Promise<R> {
    const key = Keys.registry(ref.serviceId, ref.instanceId);
    for (let attempt = 1; ; attempt++) {
      try {
        return await decision(await this.options.store.get(key));
      } catch (error) {
        const raced = error instanceof KeyExistsError || error instanceof KeyChangedError;
        if (!raced) throw error;
        if (attempt >= DECISION_ATTEMPTS) {
          throw new RegistryError(
            status.ABORTED,
            `${describeRef(ref)} kept changing while this request was decided; retry`,
          );
        }
      }
    }
  }

  /** A compare-and-set write over `entry` (a create when there is none). */
  private write(instance: ServiceInstance, entry: Revisioned<ServiceInstance> | undefined) {
    const store = this.options.store;
    return entry ? store.update(instance, entry.revision) : store.create(instance);
  }
}
