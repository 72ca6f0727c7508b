/**
 * Active `grpc.health.v1` checks of instances that declare `health.grpc`. The work is
 * split over the live discovery replicas by rendezvous hashing of each instance key,
 * so each instance is probed by one replica at a time and a lost replica's share
 * moves to the others as soon as its own registration lapses.
 */

import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import type { Logger } from 'pino';
import type { LocalView, ServiceInstance } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { parseInstanceMetadata } from '../common/lb-metadata.js';
import { ownerOf } from '../common/rendezvous.js';
import { LogIds } from './log-ids.js';
import { discoveryMetrics } from './metrics.js';
import type { Registry } from './registry.js';

const { InstanceStatus } = halyard.discovery.v1;

/** The service every discovery replica registers itself under. */
export const DISCOVERY_SERVICE_ID = 'halyard-discovery';

export interface HealthCheckOptions {
  readonly replicaId: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Consecutive failed probes (timeouts, connection errors) before DOWN; NOT_SERVING is immediate. */
  readonly failureThreshold: number;
}

type Verdict = 'serving' | 'not-serving' | 'failed';

interface HealthClient extends grpc.Client {
  check(
    request: { service: string },
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, response?: { status: string }) => void,
  ): void;
}

const HealthClientCtor = grpc.makeGenericClientConstructor(
  healthService as unknown as grpc.ServiceDefinition,
  'Health',
) as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options: grpc.ClientOptions,
) => HealthClient;

/** Live discovery replicas: the UP registrations of the discovery service itself. */
export function liveReplicas(view: LocalView<ServiceInstance>): string[] {
  const ids: string[] = [];
  for (const instance of view.values()) {
    if (instance.serviceId === DISCOVERY_SERVICE_ID && instance.status === InstanceStatus.UP) {
      ids.push(instance.instanceId);
    }
  }
  return ids.sort();
}

/**
 * The `health.grpc` setting of an instance value; memoised per value object, since the
 * view hands out the same object until the entry changes and ticks walk the whole view.
 */
const healthServices = new WeakMap<ServiceInstance, string | null>();
function healthServiceOf(instance: ServiceInstance): string | undefined {
  let service = healthServices.get(instance);
  if (service === undefined) {
    const parsed = parseInstanceMetadata(instance.metadata);
    service = (parsed.ok ? parsed.settings.health.grpcService : undefined) ?? null;
    healthServices.set(instance, service);
  }
  return service ?? undefined;
}

export class HealthChecker {
  private timer: NodeJS.Timeout | undefined;
  private readonly clients = new Map<string, { address: string; client: HealthClient }>();
  private readonly failures = new Map<string, number>();
  private readonly inFlight = new Set<string>();
  private owned = new Set<string>();

  constructor(
    private readonly registry: Registry,
    private readonly options: HealthCheckOptions,
    private readonly logger: Logger,
  ) {}

  /** Keys of the instances this replica probes right now. */
  get probing(): ReadonlySet<string> {
    return this.owned;
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    this.timer.unref();
    this.tick();
  }

  stop(): void {
    clearInterval(this.timer);
    for (const { client } of this.clients.values()) client.close();
    this.clients.clear();
  }

  private tick(): void {
    const view = this.registry.view;
    const replicas = liveReplicas(view);
    const { replicaId } = this.options;
    discoveryMetrics.liveReplicas.set({ replica: replicaId }, replicas.length);
    const owned = new Map<string, { instance: ServiceInstance; service: string }>();
    for (const [key, instance] of view.entries()) {
      const service = healthServiceOf(instance);
      if (service === undefined) continue;
      if (ownerOf(key, replicas) === replicaId) owned.set(key, { instance, service });
    }
    this.reconcile(owned.keys(), replicas.length);
    for (const [key, { instance, service }] of owned) {
      if (!this.inFlight.has(key)) void this.probe(key, instance, service);
    }
  }

  private reconcile(keys: Iterable<string>, replicaCount: number): void {
    const next = new Set(keys);
    const gained = [...next].filter((k) => !this.owned.has(k)).length;
    const lost = [...this.owned].filter((k) => !next.has(k));
    for (const key of lost) {
      this.failures.delete(key);
      this.clients.get(key)?.client.close();
      this.clients.delete(key);
    }
    if (gained > 0 || lost.length > 0) {
      this.logger.info(
        {
          msgId: LogIds.ownershipChanged,
          probing: next.size,
          gained,
          lost: lost.length,
          replicas: replicaCount,
        },
        'health-check share changed',
      );
    }
    this.owned = next;
    discoveryMetrics.probed.set({ replica: this.options.replicaId }, next.size);
  }

  private client(key: string, address: string): HealthClient {
    const held = this.clients.get(key);
    if (held?.address === address) return held.client;
    held?.client.close();
    const client = new HealthClientCtor(address, grpc.credentials.createInsecure(), {
      // Lets an instance tell which replica probes it.
      'grpc.primary_user_agent': `halyard-discovery/${this.options.replicaId}`,
    });
    this.clients.set(key, { address, client });
    return client;
  }

  private async probe(key: string, instance: ServiceInstance, service: string): Promise<void> {
    this.inFlight.add(key);
    try {
      const verdict = await this.check(this.client(key, instance.address), service);
      discoveryMetrics.probes.inc({ replica: this.options.replicaId, result: verdict });
      const failures = verdict === 'failed' ? (this.failures.get(key) ?? 0) + 1 : 0;
      this.failures.set(key, failures);
      const down =
        verdict === 'not-serving' ||
        (verdict === 'failed' && failures >= this.options.failureThreshold);
      await this.apply(key, down ? 'down' : verdict === 'serving' ? 'up' : undefined, verdict);
    } finally {
      this.inFlight.delete(key);
    }
  }

  private check(client: HealthClient, service: string): Promise<Verdict> {
    return new Promise((resolve) => {
      client.check(
        { service },
        { deadline: Date.now() + this.options.timeoutMs },
        (error, response) => {
          if (error) resolve('failed');
          else resolve(response?.status === 'SERVING' ? 'serving' : 'not-serving');
        },
      );
    });
  }

  /** Moves UP/STARTING ⇄ DOWN only: DRAINING and OUT_OF_SERVICE belong to the instance and operators. */
  private async apply(
    key: string,
    verdict: 'up' | 'down' | undefined,
    seen: Verdict,
  ): Promise<void> {
    if (!this.owned.has(key) || verdict === undefined) return;
    const current = this.registry.view.get(key);
    if (!current) return;
    const { status } = current;
    let next: number | undefined;
    if (
      verdict === 'down' &&
      (status === InstanceStatus.UP || status === InstanceStatus.STARTING)
    ) {
      next = InstanceStatus.DOWN;
    } else if (
      verdict === 'up' &&
      (status === InstanceStatus.DOWN || status === InstanceStatus.STARTING)
    ) {
      next = InstanceStatus.UP;
    }
    if (next === undefined) return;
    const ref = { serviceId: current.serviceId, instanceId: current.instanceId };
    try {
      await this.registry.setStatus(ref, next, `health check: ${seen}`);
      this.logger[next === InstanceStatus.DOWN ? 'warn' : 'info'](
        {
          msgId: next === InstanceStatus.DOWN ? LogIds.probeDown : LogIds.probeUp,
          serviceId: ref.serviceId,
          instanceId: ref.instanceId,
          result: seen,
        },
        next === InstanceStatus.DOWN
          ? 'health check failed: instance DOWN'
          : 'health check passed: instance UP',
      );
    } catch (error) {
      // Lapsed or deregistered meanwhile, or the bus is away: the next probe decides again.
      this.logger.error(
        { msgId: LogIds.probeWriteFailed, key, err: error },
        'could not record health check result',
      );
    }
  }
}
