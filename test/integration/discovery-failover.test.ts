import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { kvStream, RegistryBucket } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import type { DiscoveryReplica } from '../../services/discovery/replica.js';
import { startReplica, TestRegistryClient } from '../support/discovery.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const WatchKind = halyard.discovery.v1.WatchResponse.Kind;
const BEFORE_KILL = 20;
const TOTAL = 60;
const BUDGET_MS = 40_000;

describe('kill -9 of the registry stream leader during registrations', () => {
  let cluster: NatsCluster;
  let r1: DiscoveryReplica;
  let r2: DiscoveryReplica;
  let c1: TestRegistryClient;
  let c2: TestRegistryClient;

  before(async () => {
    cluster = await NatsCluster.start();
    // Replica leases longer than the outage, so the replica set itself stays put.
    [r1, r2] = await Promise.all([
      startReplica(cluster, 'r1', { replicaLeaseSeconds: 30 }),
      startReplica(cluster, 'r2', { replicaLeaseSeconds: 30 }),
    ]);
    c1 = new TestRegistryClient(r1.grpcAddress);
    c2 = new TestRegistryClient(r2.grpcAddress);
  });
  after(async () => {
    c1?.close();
    c2?.close();
    await r1?.stop();
    await r2?.stop();
    await cluster?.close();
  });

  test('no registration is lost; clients see at most a delay', async (t) => {
    const streamed = new Set<string>();
    const watch = c2.watch('orders');
    watch.on('data', (m: { kind: number; instance?: { instanceId: string } }) => {
      if (m.kind === WatchKind.UPSERTED && m.instance) streamed.add(m.instance.instanceId);
    });
    watch.on('error', () => {});

    const latencies: number[] = [];
    const failures: string[] = [];
    let killed = -1;
    const deadline = Date.now() + BUDGET_MS;
    for (let i = 0; i < TOTAL && Date.now() < deadline; i++) {
      if (i === BEFORE_KILL) {
        killed = await cluster.streamLeader(kvStream(RegistryBucket.name));
        await cluster.killNode(killed);
      }
      const client = i % 2 === 0 ? c1 : c2;
      const started = Date.now();
      try {
        await client.register(
          {
            serviceId: 'orders',
            instanceId: `o-${i}`,
            address: `127.0.0.1:${8000 + i}`,
            leaseSeconds: 120,
          },
          BUDGET_MS,
        );
        latencies.push(Date.now() - started);
      } catch (error) {
        failures.push(`o-${i}: ${(error as Error).message}`);
      }
    }
    t.diagnostic(
      `leader n${killed} killed; slowest registration ${Math.max(...latencies)} ms; median ${latencies.sort((a, b) => a - b)[latencies.length >> 1]} ms`,
    );
    assert.deepEqual(failures, [], 'every registration was acknowledged');
    assert.equal(latencies.length, TOTAL);
    const expected = Array.from({ length: TOTAL }, (_, i) => `o-${i}`).sort();
    for (const [name, client] of [
      ['r1', c1],
      ['r2', c2],
    ] as const) {
      let ids: string[] = [];
      const listed = await until(
        `every registration listed on ${name}`,
        async () => {
          ids = (await client.list('orders')).map((i) => String(i.instanceId)).sort();
          return ids.length === TOTAL ? ids : undefined;
        },
        15_000,
      ).catch((error: Error) => {
        const missing = expected.filter((id) => !ids.includes(id));
        throw new Error(`${error.message}; missing ${missing.join(', ')}`);
      });
      assert.deepEqual(listed, expected);
    }
    await until(
      'every registration streamed to the watcher',
      () => streamed.size === TOTAL,
      15_000,
    );
    watch.cancel();
    await cluster.startNode(killed);
  });
});
