import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status as grpcStatus } from '@grpc/grpc-js';
import { Bus, type DiscoveryEvent, Keys, RegistryBucket } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { sleep } from '../../services/common/sleep.js';
import { RegistrationClient } from '../../services/discovery/client.js';
import { LogIds } from '../../services/discovery/log-ids.js';
import { discoveryMetrics } from '../../services/discovery/metrics.js';
import type { DiscoveryReplica } from '../../services/discovery/replica.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { rejection, startReplica, TestRegistryClient, tokenFile } from '../support/discovery.js';
import { startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import { counterSum } from '../support/metrics.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const { InstanceStatus } = halyard.discovery.v1;
const QUIET_SERVICE = 'acme.quiet.v1.Quiet';
const { Kind } = halyard.discovery.v1.DiscoveryEvent;
const LEASE_S = 2;
/** Leases renewed in one round lapse within this of each other even on a loaded machine. */
const SETTLE = { expirySettleMs: 500 };

const instance = (serviceId: string, instanceId: string, port = 7100) => ({
  serviceId,
  instanceId,
  address: `127.0.0.1:${port}`,
  status: InstanceStatus.UP,
  leaseSeconds: LEASE_S,
});

describe('leases, server-side expiry and self-preservation with two replicas', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let r1: DiscoveryReplica;
  let r2: DiscoveryReplica;
  let c1: TestRegistryClient;
  let c2: TestRegistryClient;
  let gateways: Gateway[] = [];
  const events: DiscoveryEvent[] = [];
  const logs = captureLogs('info');

  before(async () => {
    cluster = await NatsCluster.start();
    bus = await Bus.connect({ servers: cluster.servers, name: 'test-leases' });
    await bus.provision();
    await bus.subscribe({ kind: 'discovery', from: 'all' }, ({ event }) => {
      events.push(event);
    });
    [r1, r2] = await Promise.all([
      startReplica(cluster, 'r1', SETTLE, logs.logger),
      startReplica(cluster, 'r2', SETTLE, logs.logger),
    ]);
    c1 = new TestRegistryClient(r1.grpcAddress);
    c2 = new TestRegistryClient(r2.grpcAddress);
    gateways = await Promise.all(
      ['gw-a', 'gw-b'].map((id) => startGateway(bus, cluster.servers, logs.logger, { id })),
    );
  });
  after(async () => {
    for (const gateway of gateways) await gateway.stop();
    c1?.close();
    c2?.close();
    await r1?.stop();
    await r2?.stop();
    await bus?.close();
    await cluster?.close();
  });

  test('an instance that stops renewing disappears from every view, every gateway and the bucket within lease + 1 s', async (t) => {
    const store = await bus.store(RegistryBucket);
    const registered = await c1.register({
      ...instance('quiet', 'q-1'),
      grpcServices: [QUIET_SERVICE],
    });
    const renewedAt = Number((registered.instance as { renewedAtMs: number }).renewedAtMs);
    const routedBy = (gateway: Gateway) =>
      gateway.table.route(QUIET_SERVICE)?.endpoints.some((e) => e.id === 'q-1') ?? false;
    await until('listed on both replicas', async () => (await c2.list('quiet')).length === 1);
    await until('routed by both gateways', () => gateways.every(routedBy));
    // The server removes a lapsed lease within a second of its lapse (its TTL resolution).
    const bound = LEASE_S * 1000 + 1000;
    await until(
      'gone from both replicas’ lists and both gateways’ routing tables',
      async () =>
        (await c1.list('quiet')).length === 0 &&
        (await c2.list('quiet')).length === 0 &&
        !gateways.some(routedBy),
      bound + 2000,
      10,
    );
    const hiddenAfter = Date.now() - renewedAt;
    await until(
      'removed from the bucket',
      async () => (await store.get(Keys.registry('quiet', 'q-1'))) === undefined,
      5000,
    );
    const removedAfter = Date.now() - renewedAt;
    t.diagnostic(`hidden ${hiddenAfter} ms, removed ${removedAfter} ms after the last renewal`);
    assert.ok(hiddenAfter <= bound, `hidden after ${hiddenAfter} ms, bound ${bound} ms`);
    assert.ok(removedAfter <= bound, `removed after ${removedAfter} ms, bound ${bound} ms`);
    const renewal = await rejection(c2.renew('quiet', 'q-1'));
    assert.equal(renewal.code, grpcStatus.NOT_FOUND, 'renewing an expired entry says NOT_FOUND');
    await until('one LEASE_EXPIRED event, however many replicas saw the expiry', () =>
      events.some((e) => e.kind === Kind.LEASE_EXPIRED && e.instanceId === 'q-1'),
    );
    assert.equal(
      events.filter((e) => e.kind === Kind.LEASE_EXPIRED && e.instanceId === 'q-1').length,
      1,
    );
  });

  test('the registration client registers again when its renewal is told NOT_FOUND', async () => {
    const client = new RegistrationClient({
      discovery: [r1.grpcAddress, r2.grpcAddress],
      credential: { tokenFile: tokenFile() },
      instance: { ...instance('resilient', 'res-1'), leaseSeconds: 3 },
      logger: logs.logger,
    });
    await client.start();
    try {
      await until('listed', async () => (await c2.list('resilient')).length === 1);
      const before = logs.withId(LogIds.clientReregistering).length;
      // As if its registration had been removed by mistake.
      await c2.deregister('resilient', 'res-1');
      await until(
        'client re-registered after NOT_FOUND',
        () => logs.withId(LogIds.clientReregistering).length > before,
        5000,
      );
      await until('listed again', async () => (await c2.list('resilient')).length === 1);
    } finally {
      await client.stop(0);
    }
    // Deregistered through one replica; the other's view hears it a moment later.
    await until('stop deregistered it', async () => (await c1.list('resilient')).length === 0);
  });

  test('self-preservation: most leases lapsing at once are held, then renewals resume', async () => {
    const COUNT = 10;
    const PAUSED = 8;
    const store = await bus.store(RegistryBucket);
    for (let i = 0; i < COUNT; i++) await c1.register(instance('fleet', `f-${i}`, 7200 + i));
    let paused = false;
    let renewing = true;
    const failures: string[] = [];
    const renewer = (async () => {
      const deadline = Date.now() + 40_000;
      while (renewing && Date.now() < deadline) {
        // One decision per round, all renewals of a round at once: the paused leases
        // were last renewed together, so they lapse together, as when the bus breaks
        // for a whole fleet renewed in step. (Lapses spread wider than the settle time
        // are decided one by one, and the first few are evicted, as the policy says.)
        const skip = paused ? PAUSED : 0;
        await Promise.all(
          Array.from({ length: COUNT - skip }, (_, n) => n + skip).map((i) =>
            c2.renew('fleet', `f-${i}`).catch((e: Error) => failures.push(`f-${i}: ${e.message}`)),
          ),
        );
        await sleep(300); // the fleet's renewal interval: a deliberate pause
      }
    })();
    try {
      await until('all listed', async () => (await c2.list('fleet')).length === COUNT);
      paused = true;
      await until(
        'SELF_PRESERVATION_ENTERED published',
        () => events.some((e) => e.kind === Kind.SELF_PRESERVATION_ENTERED),
        10_000,
      );
      await until('both replicas hold', () => r1.selfPreserving && r2.selfPreserving, 5000);
      // Held twice over: each paused lease lapsed, was written back, and lapsed again.
      await until(
        'every paused lease held twice',
        async () => (await counterSum(discoveryMetrics.held)) >= 2 * PAUSED,
        10_000,
      );
      for (let i = 0; i < PAUSED; i++) {
        await until(`f-${i} written back to the bucket`, () =>
          store.get(Keys.registry('fleet', `f-${i}`)),
        );
      }
      assert.equal(
        events.filter((e) => e.kind === Kind.LEASE_EXPIRED && e.serviceId === 'fleet').length,
        0,
        'no held lease was reported as expired',
      );
      paused = false;
      await until(
        'renewals bring every instance back',
        async () => (await c1.list('fleet')).length === COUNT,
        10_000,
      );
      await until('SELF_PRESERVATION_EXITED published', () =>
        events.some((e) => e.kind === Kind.SELF_PRESERVATION_EXITED),
      );
      await until(
        'both replicas let leases expire again',
        () => !r1.selfPreserving && !r2.selfPreserving,
      );
      assert.deepEqual(failures, [], 'no renewal was told NOT_FOUND: nothing had to re-register');
      assert.ok(logs.withId(LogIds.selfPreservationEntered).length >= 1);
      assert.ok(logs.withId(LogIds.selfPreservationExited).length >= 1);
    } finally {
      renewing = false;
      await renewer;
    }
  });
});
