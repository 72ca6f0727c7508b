/** Valid bus values with every field set to a non-default value, for tests. */
import { createHash } from 'node:crypto';
import type {
  AffinityPreference,
  CacheEntry,
  DiscoveryEvent,
  GatewayEvent,
  LifecycleEvent,
  ServiceInstance,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';

const { InstanceStatus } = halyard.discovery.v1;

export function userKey(user: string): string {
  return createHash('sha256').update(user).digest('base64url');
}

export function instance(overrides: Partial<ServiceInstance> = {}): ServiceInstance {
  const now = Date.now();
  return {
    serviceId: 'orders',
    instanceId: 'orders-1',
    address: '127.0.0.1:7001',
    grpcServices: ['acme.orders.v1.Orders'],
    status: InstanceStatus.UP,
    metadata: { 'lb.policy': 'round-robin' },
    leaseSeconds: 15,
    registeredAtMs: now - 1000,
    renewedAtMs: now,
    launcherId: 'launcher-a',
    hostId: 'host-a',
    version: '1.2.3',
    ...overrides,
  };
}

export function preference(overrides: Partial<AffinityPreference> = {}): AffinityPreference {
  const now = Date.now();
  return {
    serviceId: 'orders',
    userKey: userKey('alice'),
    instanceId: 'orders-1',
    createdAtMs: now - 5000,
    lastSeenAtMs: now,
    idleSeconds: 28_800,
    gatewayId: 'gw-1',
    ...overrides,
  };
}

export function cacheEntry(overrides: Partial<CacheEntry> = {}): CacheEntry {
  const now = Date.now();
  return {
    namespace: 'billing',
    key: 'session/42 ✓',
    value: new Uint8Array([1, 2, 3]),
    createdAtMs: now - 1000,
    updatedAtMs: now,
    expiresAtMs: now + 60_000,
    ...overrides,
  };
}

export function lifecycleEvent(overrides: Partial<LifecycleEvent> = {}): LifecycleEvent {
  return {
    eventId: `host-a/gateway/1/exited/${Math.random().toString(36).slice(2)}`,
    kind: halyard.launcher.v1.LifecycleEvent.Kind.EXITED,
    occurredAtMs: Date.now(),
    hostId: 'host-a',
    launcherId: 'launcher-a',
    component: 'gateway',
    instance: 1,
    pid: 4242,
    port: 7443,
    exitCode: 137,
    signal: 'SIGKILL',
    uptimeMs: 12_345,
    attempt: 2,
    delayMs: 1000,
    reason: 'killed',
    processStart: 987_654,
    ...overrides,
  };
}

export function gatewayEvent(overrides: Partial<GatewayEvent> = {}): GatewayEvent {
  return {
    eventId: `gw-1/ejected/${Math.random().toString(36).slice(2)}`,
    kind: halyard.gateway.v1.GatewayEvent.Kind.AFFINITY_MOVED,
    occurredAtMs: Date.now(),
    gatewayId: 'gw-1',
    serviceId: 'orders',
    instanceId: 'orders-1',
    toInstanceId: 'orders-2',
    userKey: userKey('alice'),
    ejectionSeconds: 30,
    reason: 'connection refused',
    ...overrides,
  };
}

export function discoveryEvent(overrides: Partial<DiscoveryEvent> = {}): DiscoveryEvent {
  return {
    eventId: `disc-1/expired/${Math.random().toString(36).slice(2)}`,
    kind: halyard.discovery.v1.DiscoveryEvent.Kind.LEASE_EXPIRED,
    occurredAtMs: Date.now(),
    replicaId: 'disc-1',
    serviceId: 'orders',
    instanceId: 'orders-1',
    status: InstanceStatus.DOWN,
    detail: 'lease lapsed 3 s ago',
    ...overrides,
  };
}
