import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Keys } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import type { DiscoveryReplica } from '../../services/discovery/replica.js';
import { staticInstanceId } from '../../services/discovery/static-definitions.js';
import { FAST, HealthBackend, startReplica, TestRegistryClient } from '../support/discovery.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const { InstanceStatus } = halyard.discovery.v1;
const WatchKind = halyard.discovery.v1.WatchResponse.Kind;
const INTERVAL_MS = FAST.health.intervalMs;
const BACKENDS = 12;
const STATIC_LEASE_S = 2;

describe('active health checks with two replicas', () => {
  let cluster: NatsCluster;
  let r1: DiscoveryReplica;
  let r2: DiscoveryReplica;
  let c1: TestRegistryClient;
  let c2: TestRegistryClient;
  const backends: HealthBackend[] = [];
  let legacy: HealthBackend;
  let dir: string;

  before(async () => {
    cluster = await NatsCluster.start();
    legacy = await HealthBackend.start();
    dir = mkdtempSync(join(tmpdir(), 'halyard-static-'));
    const staticFile = join(dir, 'static.yaml');
    writeFileSync(
      staticFile,
      [
        'instances:',
        '  - service: legacy-billing',
        `    address: "${legacy.address}"`,
        '    grpcServices: [acme.billing.v1.Billing]',
        '    metadata: { health.grpc: "" }',
      ].join('\n'),
    );
    const options = { staticFile, leases: { ...FAST.leases, defaultSeconds: STATIC_LEASE_S } };
    [r1, r2] = await Promise.all([
      startReplica(cluster, 'r1', options),
      startReplica(cluster, 'r2', options),
    ]);
    c1 = new TestRegistryClient(r1.grpcAddress);
    c2 = new TestRegistryClient(r2.grpcAddress);
    await until(
      'both replicas see each other',
      async () => (await c1.list('halyard-discovery')).length === 2,
    );
    for (let i = 0; i < BACKENDS; i++) {
      const backend = await HealthBackend.start();
      backends.push(backend);
      await c1.register({
        serviceId: 'probed',
        instanceId: `h-${i}`,
        address: backend.address,
        leaseSeconds: 60,
        metadata: { 'health.grpc': '' },
      });
    }
  });
  after(async () => {
    c1?.close();
    c2?.close();
    await r1?.stop();
    await r2?.stop();
    for (const b of backends) b.close();
    legacy?.close();
    await cluster?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('each instance is probed by exactly one replica, and the work is split', async (t) => {
    for (const b of backends) b.probers.length = 0;
    await until(
      'three probes of every instance',
      () => backends.every((b) => b.probers.length >= 3),
      10_000,
    );
    const probers = backends.map((b) => [...new Set(b.probers)]);
    assert.ok(
      probers.every((p) => p.length === 1),
      `probers per instance: ${JSON.stringify(probers)}`,
    );
    const keys = backends.map((_, i) => Keys.registry('probed', `h-${i}`));
    const mine1 = keys.filter((k) => r1.healthChecker.probing.has(k));
    const mine2 = keys.filter((k) => r2.healthChecker.probing.has(k));
    t.diagnostic(`r1 probes ${mine1.length}, r2 probes ${mine2.length} of ${BACKENDS}`);
    assert.equal(mine1.length + mine2.length, BACKENDS, 'every instance owned exactly once');
    assert.ok(mine1.length > 0 && mine2.length > 0, 'both replicas take a share');
    probers.forEach((p, i) => {
      assert.equal(p[0], mine1.includes(keys[i]!) ? 'r1' : 'r2', `h-${i} probed by its owner`);
    });
  });

  test('NOT_SERVING marks DOWN within two probe intervals on every replica; recovery marks UP', async (t) => {
    const backend = backends[0]!;
    const statusOn = async (client: TestRegistryClient) =>
      (await client.list('probed')).find((i) => i.instanceId === 'h-0')?.status;
    const both = async (status: number) =>
      (await statusOn(c1)) === status && (await statusOn(c2)) === status;
    await until('UP at first', () => both(InstanceStatus.UP));

    backend.status = 'NOT_SERVING';
    const downAt = Date.now();
    await until(
      'DOWN on both replicas',
      () => both(InstanceStatus.DOWN),
      2 * INTERVAL_MS + 1000,
      10,
    );
    const down = Date.now() - downAt;
    backend.status = 'SERVING';
    const upAt = Date.now();
    await until(
      'UP again on both replicas',
      () => both(InstanceStatus.UP),
      2 * INTERVAL_MS + 1000,
      10,
    );
    const up = Date.now() - upAt;
    t.diagnostic(`DOWN after ${down} ms, UP after ${up} ms (probe interval ${INTERVAL_MS} ms)`);
    assert.ok(down <= 2 * INTERVAL_MS, `DOWN after ${down} ms`);
    assert.ok(up <= 2 * INTERVAL_MS, `UP after ${up} ms`);
  });

  test('an unreachable instance is marked DOWN after the failure threshold', async () => {
    const backend = backends[1]!;
    backend.close();
    const bound = (FAST.health.failureThreshold + 1) * INTERVAL_MS + FAST.health.timeoutMs;
    const since = Date.now();
    await until(
      'DOWN',
      async () =>
        (await c2.list('probed')).find((i) => i.instanceId === 'h-1')?.status ===
        InstanceStatus.DOWN,
      bound + 2000,
    );
    assert.ok(
      Date.now() - since <= bound + 200,
      `DOWN after ${Date.now() - since} ms, bound ${bound} ms`,
    );
  });

  test('a static definition is published, health-checked and never lapses', async () => {
    const id = staticInstanceId({ service: 'legacy-billing', address: legacy.address } as never);
    const watch = c2.watch('legacy-billing');
    const changes: Array<{ kind: number; instance?: { renewedAtMs: number; status: number } }> = [];
    watch.on('data', (m) => changes.push(m as never));
    watch.on('error', () => {});
    const listed = await until('listed on replica 2', async () =>
      (await c2.list('legacy-billing')).find((i) => i.instanceId === id),
    );
    assert.equal(listed.address, legacy.address);
    assert.deepEqual(listed.grpcServices, ['acme.billing.v1.Billing']);
    const start = Date.now();
    // Renewed by discovery across three whole leases, never removed.
    await until(
      'renewed three leases later',
      () => changes.some((c) => (c.instance?.renewedAtMs ?? 0) > start + 3 * STATIC_LEASE_S * 1000),
      3 * STATIC_LEASE_S * 1000 + 5000,
    );
    assert.equal(changes.filter((c) => c.kind === WatchKind.REMOVED).length, 0, 'never lapsed');

    legacy.status = 'NOT_SERVING';
    await until(
      'DOWN',
      () => changes.some((c) => c.instance?.status === InstanceStatus.DOWN),
      5000,
    );
    legacy.status = 'SERVING';
    await until(
      'UP again',
      async () => (await c1.list('legacy-billing'))[0]?.status === InstanceStatus.UP,
      5000,
    );
    watch.cancel();
  });
});
