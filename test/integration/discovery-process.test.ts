import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Bus, Keys, RegistryBucket } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { LogIds } from '../../services/discovery/log-ids.js';
import {
  HealthBackend,
  type ReplicaProcess,
  spawnReplica,
  spawnTs,
  TESTER_ACCESS_YAML,
  TestRegistryClient,
  tokenFile,
} from '../support/discovery.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const { InstanceStatus } = halyard.discovery.v1;
const WatchKind = halyard.discovery.v1.WatchResponse.Kind;
const REPLICA_LEASE_S = 2;

type Change = { kind: number; instance?: { instanceId: string; status: number } };

describe('discovery replicas and a registered service as real processes', () => {
  let cluster: NatsCluster;
  let dir: string;
  let p1: ReplicaProcess;
  let p2: ReplicaProcess;
  let c2: TestRegistryClient;
  const backends: HealthBackend[] = [];

  before(async () => {
    cluster = await NatsCluster.start();
    dir = mkdtempSync(join(tmpdir(), 'halyard-discovery-'));
    const config = join(dir, 'discovery.yaml');
    writeFileSync(
      config,
      [
        'leases: { defaultSeconds: 15, minSeconds: 1, maxSeconds: 300 }',
        `replicaLeaseSeconds: ${REPLICA_LEASE_S}`,
        'expiry: { checkIntervalMs: 300, settleMs: 200 }',
        'selfPreservation: { windowMs: 2000 }',
        'health: { intervalMs: 400, timeoutMs: 300, failureThreshold: 2 }',
        TESTER_ACCESS_YAML,
      ].join('\n'),
    );
    [p1, p2] = await Promise.all([
      spawnReplica(cluster, 'p1', config),
      spawnReplica(cluster, 'p2', config),
    ]);
    c2 = new TestRegistryClient(p2.grpcAddress);
  });
  after(async () => {
    c2?.close();
    for (const p of [p1, p2]) if (p?.child.exitCode === null) p.child.kill('SIGKILL');
    for (const b of backends) b.close();
    await cluster?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('kill -9 of a discovery replica changes nothing for clients of the other', async (t) => {
    const ready = await fetch(`http://127.0.0.1:${p2.adminPort}/readyz`);
    assert.equal(ready.status, 200);
    const service = spawnTs('test/support/registered-service.ts', [], {
      DISCOVERY: `${p1.grpcAddress},${p2.grpcAddress}`,
      SERVICE_ID: 'orders',
      INSTANCE_ID: 'orders-1',
      LEASE_SECONDS: '3',
      GRACE_MS: '500',
      HALYARD_REGISTRY_TOKEN_FILE: tokenFile(),
    });
    t.after(() => {
      if (service.child.exitCode === null) service.child.kill('SIGKILL');
    });
    for (let i = 0; i < 4; i++) {
      const backend = await HealthBackend.start();
      backends.push(backend);
      await c2.register({
        serviceId: 'probed',
        instanceId: `h-${i}`,
        address: backend.address,
        metadata: { 'health.grpc': '' },
      });
    }
    await until('registered', async () => (await c2.list('orders')).length === 1);
    const orphaned = await until('a backend probed by p1', () =>
      backends.find((b) => b.probers.includes('p1')),
    );

    const changes: Change[] = [];
    const watch = c2.watch();
    watch.on('data', (m) => changes.push(m as Change));
    watch.on('error', () => {});
    await until('watch synced', () => changes.some((c) => c.kind === WatchKind.SYNCED));

    p1.child.kill('SIGKILL');
    const killedAt = Date.now();
    await p1.exited;
    await until(
      'p1 dropped out of the replica set',
      async () => (await c2.list('halyard-discovery')).map((r) => r.instanceId).join() === 'p2',
      REPLICA_LEASE_S * 1000 + 3000,
    );
    const probesBefore = orphaned.probers.length;
    await until('p2 took over p1’s health checks', () =>
      orphaned.probers.slice(probesBefore).includes('p2'),
    );
    await until(
      'service failed over to p2',
      () => service.withId(LogIds.clientFailover).length > 0,
      5000,
    );
    const renewals = async () => {
      const text = await (await fetch(`http://127.0.0.1:${p2.adminPort}/metrics`)).text();
      const line = text
        .split('\n')
        .find(
          (l) =>
            l.startsWith('halyard_discovery_requests_total{') &&
            l.includes('method="Renew"') &&
            l.includes('code="OK"') &&
            l.includes('replica="p2"'),
        );
      return Number(line?.split(' ').pop() ?? 0);
    };
    const renewedBefore = await renewals();
    // A whole lease (3 s) of renewals through p2 alone since the kill.
    await until(
      'three more renewals through p2',
      async () => (await renewals()) >= renewedBefore + 3,
      6000,
      100,
    );
    assert.ok(Date.now() - killedAt > 3000, 'a whole lease of the service passed since the kill');
    assert.deepEqual(
      (await c2.list('orders')).map((i) => i.instanceId),
      ['orders-1'],
    );
    assert.equal(
      changes.filter((c) => c.instance?.instanceId === 'orders-1' && c.kind === WatchKind.REMOVED)
        .length,
      0,
      'the service never disappeared from the survivor’s view',
    );
    assert.equal(
      service.withId(LogIds.clientReregistering).length,
      0,
      'it never had to register again',
    );
    watch.cancel();

    // SIGTERM of the service: DRAINING first, deregistration after the grace period.
    const drainWatch = c2.watch('orders');
    const drain: Array<{ change: Change; at: number }> = [];
    drainWatch.on('data', (m) => drain.push({ change: m as Change, at: Date.now() }));
    drainWatch.on('error', () => {});
    await until('synced', () => drain.some((d) => d.change.kind === WatchKind.SYNCED));
    service.child.kill('SIGTERM');
    const exit = await service.exited;
    assert.equal(exit.code, 0);
    const draining = drain.find((d) => d.change.instance?.status === InstanceStatus.DRAINING);
    const removed = await until('removed', () =>
      drain.find((d) => d.change.kind === WatchKind.REMOVED),
    );
    assert.ok(draining, 'DRAINING streamed before removal');
    assert.ok(
      removed.at - draining.at >= 450,
      `deregistered ${removed.at - draining.at} ms after DRAINING`,
    );
    drainWatch.cancel();
  });

  test('SIGTERM of a discovery replica: it leaves the replica set and exits cleanly', async () => {
    const bus = await Bus.connect({ servers: cluster.servers, name: 'test-process' });
    const store = await bus.store(RegistryBucket);
    assert.ok(await store.get(Keys.registry('halyard-discovery', 'p2')), 'announced while running');
    p2.child.kill('SIGTERM');
    const exit = await p2.exited;
    assert.equal(exit.code, 0);
    assert.equal(
      await store.get(Keys.registry('halyard-discovery', 'p2')),
      undefined,
      'deregistered itself',
    );
    await bus.close();
    assert.equal(p2.withId(LogIds.stopping).length, 1);
    assert.equal(p2.withId(LogIds.stopped).length, 1);
  });
});
