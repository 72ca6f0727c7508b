import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status as grpcStatus } from '@grpc/grpc-js';
import { Bus, busMetrics, Keys, RegistryBucket } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { discoveryMetrics } from '../../services/discovery/metrics.js';
import type { DiscoveryReplica } from '../../services/discovery/replica.js';
import {
  rejection,
  startReplica,
  TESTER_ACCESS,
  TestRegistryClient,
} from '../support/discovery.js';
import { counterValue } from '../support/metrics.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { rawConnection } from '../support/raw-nats.js';
import { until } from '../support/wait.js';

const { InstanceStatus } = halyard.discovery.v1;
const WatchKind = halyard.discovery.v1.WatchResponse.Kind;

function registration(overrides: Record<string, unknown> = {}) {
  return {
    serviceId: 'orders',
    instanceId: 'orders-1',
    address: '127.0.0.1:7001',
    grpcServices: ['acme.orders.v1.Orders'],
    status: InstanceStatus.UP,
    metadata: { 'lb.policy': 'user', 'lb.idleSeconds': '3600' },
    leaseSeconds: 30,
    version: '1.0.0',
    ...overrides,
  };
}

describe('discovery registry: two replicas on a 3-node cluster', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let r1: DiscoveryReplica;
  let r2: DiscoveryReplica;
  let c1: TestRegistryClient;
  let c2: TestRegistryClient;

  before(async () => {
    cluster = await NatsCluster.start();
    bus = await Bus.connect({ servers: cluster.servers, name: 'test-registry' });
    await bus.provision();
    [r1, r2] = await Promise.all([startReplica(cluster, 'r1'), startReplica(cluster, 'r2')]);
    c1 = new TestRegistryClient(r1.grpcAddress);
    c2 = new TestRegistryClient(r2.grpcAddress);
  });
  after(async () => {
    c1?.close();
    c2?.close();
    await r1?.stop();
    await r2?.stop();
    await bus?.close();
    await cluster?.close();
  });

  test('register on replica 1: List on replica 2 shows it and Watch on replica 2 streams it', async () => {
    const watch = c2.watch('orders');
    const seen: Array<{ kind: number; instance?: Record<string, unknown> }> = [];
    watch.on('data', (m) => seen.push(m as never));
    watch.on('error', () => {});
    await until('watch synced', () => seen.some((m) => m.kind === WatchKind.SYNCED));

    const response = await c1.register(registration());
    assert.equal(response.renewIntervalSeconds, 10, 'renew three times per lease');
    const listed = await until('listed on replica 2', async () => {
      const all = await c2.list('orders');
      return all.length === 1 ? all : undefined;
    });
    assert.equal(listed[0]?.address, '127.0.0.1:7001');
    assert.deepEqual(listed[0]?.metadata, { 'lb.policy': 'user', 'lb.idleSeconds': '3600' });
    await until('watch on replica 2 streamed the registration', () =>
      seen.some((m) => m.kind === WatchKind.UPSERTED && m.instance?.instanceId === 'orders-1'),
    );

    await c2.setStatus('orders', 'orders-1', InstanceStatus.DRAINING);
    await until('status change streamed', () =>
      seen.some(
        (m) => m.kind === WatchKind.UPSERTED && m.instance?.status === InstanceStatus.DRAINING,
      ),
    );
    const renewed = await c2.renew('orders', 'orders-1');
    assert.ok(Number(renewed.expiresAtMs) > Date.now() + 25_000);
    await c1.deregister('orders', 'orders-1');
    await until('deregistration streamed', () => seen.some((m) => m.kind === WatchKind.REMOVED));
    assert.deepEqual(await c2.list('orders'), []);
    watch.cancel();
  });

  test('both replicas announce themselves as halyard-discovery', async () => {
    const replicas = await c1.list('halyard-discovery');
    assert.deepEqual(
      replicas.map((r) => [r.instanceId, r.address]),
      [
        ['r1', r1.grpcAddress],
        ['r2', r2.grpcAddress],
      ],
    );
  });

  test('re-registration of the same instance succeeds; another address is ALREADY_EXISTS', async () => {
    await c1.register(registration({ instanceId: 'dup-1' }));
    await c2.register(registration({ instanceId: 'dup-1', version: '1.0.1' }));
    const clash = await rejection(
      c2.register(registration({ instanceId: 'dup-1', address: '127.0.0.1:7999' })),
    );
    assert.equal(clash.code, grpcStatus.ALREADY_EXISTS);
    assert.match(clash.details, /instance\.instance_id: .*registered at 127\.0\.0\.1:7001/);
    const stored = await (await bus.store(RegistryBucket)).get(Keys.registry('orders', 'dup-1'));
    assert.equal(stored?.value.address, '127.0.0.1:7001', 'the clash wrote nothing');
    assert.equal(stored?.value.version, '1.0.1');
    await c1.deregister('orders', 'dup-1');
  });

  test('a renewal through the other replica right after a deregistration or a status change decides on what was written', async () => {
    const store = await bus.store(RegistryBucket);
    // Each renewal on replica 2 follows a write on replica 1 at once, so it often starts
    // before replica 2's view has the write: its compare-and-set must fail and decide again.
    for (let i = 0; i < 10; i++) {
      const instanceId = `race-${i}`;
      await c1.register(registration({ instanceId }));
      await c2.renew('orders', instanceId);
      await c1.setStatus('orders', instanceId, InstanceStatus.DOWN);
      await c2.renew('orders', instanceId);
      const renewed = await store.get(Keys.registry('orders', instanceId));
      assert.equal(
        renewed?.value.status,
        InstanceStatus.DOWN,
        'the renewal kept the status change',
      );
      await c1.deregister('orders', instanceId);
      const late = await rejection(c2.renew('orders', instanceId));
      assert.equal(late.code, grpcStatus.NOT_FOUND, 'a deregistration wins over a later renewal');
      assert.equal(await store.get(Keys.registry('orders', instanceId)), undefined);
    }
  });

  const badRegistrations: Array<[string, Record<string, unknown>, string]> = [
    ['missing service id', { serviceId: '' }, 'instance.service_id'],
    ['service id with capitals', { serviceId: 'Orders' }, 'instance.service_id'],
    ['service id with underscore', { serviceId: 'orders_v2' }, 'instance.service_id'],
    ['instance id with a dot', { instanceId: 'a.b' }, 'instance.instance_id'],
    ['address without port', { address: 'orders.internal' }, 'instance.address'],
    ['port out of range', { address: '127.0.0.1:70000' }, 'instance.address'],
    ['unknown status', { status: 42 }, 'instance.status'],
    ['bad gRPC service name', { grpcServices: ['not a name'] }, 'instance.grpc_services[0]'],
    [
      'unknown lb policy',
      { metadata: { 'lb.policy': 'random' } },
      'instance.metadata["lb.policy"]',
    ],
    ['unknown lb key', { metadata: { 'lb.colour': 'blue' } }, 'instance.metadata["lb.colour"]'],
    [
      'non-numeric idle time',
      { metadata: { 'lb.idleSeconds': 'soon' } },
      'instance.metadata["lb.idleSeconds"]',
    ],
    ['absurd lease', { leaseSeconds: 100_000 }, 'instance.lease_seconds'],
  ];
  for (const [name, overrides, field] of badRegistrations) {
    test(`Register with ${name}: INVALID_ARGUMENT naming ${field}, counted, nothing written`, async () => {
      const request = registration({ instanceId: 'bad-1', ...overrides });
      const before = await counterValue(discoveryMetrics.rejected, {
        replica: 'r1',
        method: 'Register',
        field,
      });
      const { code, details } = await rejection(c1.register(request));
      assert.equal(code, grpcStatus.INVALID_ARGUMENT);
      assert.ok(details.startsWith(`${field}: `), details);
      assert.equal(
        await counterValue(discoveryMetrics.rejected, { replica: 'r1', method: 'Register', field }),
        before + 1,
      );
      const store = await bus.store(RegistryBucket);
      const sid = String(request.serviceId);
      const iid = String(request.instanceId);
      const key =
        /^[A-Za-z0-9_-]{1,64}$/.test(sid) && /^[A-Za-z0-9_-]{1,64}$/.test(iid)
          ? Keys.registry(sid, iid)
          : undefined;
      if (key) assert.equal(await store.get(key), undefined, 'nothing written');
      assert.deepEqual(
        (await c2.list()).filter((i) => i.instanceId === iid),
        [],
        'no replica lists it',
      );
    });
  }

  test('Register without an instance, and bad refs on the other calls, name their field', async () => {
    const cases: Array<[() => Promise<unknown>, number, string]> = [
      [() => c1.register(null as never), grpcStatus.INVALID_ARGUMENT, 'instance: is required'],
      [() => c1.renew('orders', 'a.b'), grpcStatus.INVALID_ARGUMENT, 'instance.instance_id: '],
      [
        () => c1.renew('orders', 'never-registered'),
        grpcStatus.NOT_FOUND,
        'instance orders/never-registered',
      ],
      [() => c1.deregister('Bad', 'x'), grpcStatus.INVALID_ARGUMENT, 'instance.service_id: '],
      [
        () => c1.deregister('orders', 'never-registered'),
        grpcStatus.NOT_FOUND,
        'instance orders/never-registered',
      ],
      [
        () => c1.setStatus('orders', 'x', 0),
        grpcStatus.INVALID_ARGUMENT,
        'status: 0 is not a known status',
      ],
      [
        () => c1.setStatus('orders', 'never-registered', InstanceStatus.UP),
        grpcStatus.NOT_FOUND,
        'instance orders/never-registered',
      ],
      [() => c1.list('Bad!'), grpcStatus.INVALID_ARGUMENT, 'service_id: '],
    ];
    for (const [call, code, prefix] of cases) {
      const failure = await rejection(call());
      assert.equal(failure.code, code, failure.details);
      assert.ok(
        failure.details.startsWith(prefix),
        `${failure.details} should start with ${prefix}`,
      );
    }
    const watch = c1.watch('Bad!');
    const error = await new Promise<{ code: number; details: string }>((resolve) => {
      watch.on('error', (e) => resolve(e as never));
      watch.on('data', () => {});
    });
    assert.equal(error.code, grpcStatus.INVALID_ARGUMENT);
    assert.match(error.details, /^service_id: /);
  });

  test('a malformed entry written straight to the bucket is skipped and counted; replicas keep serving', async () => {
    const before = await counterValue(busMetrics.invalidMessages, { source: RegistryBucket.name });
    // Someone else's writer, bypassing Halyard's codecs: a raw KV put of garbage.
    const raw = await rawConnection(cluster.servers);
    await raw.request('$KV.halyard-registry.orders.garbage-1', new Uint8Array([0xff, 0x01, 0x02]), {
      timeout: 5000,
    });
    await raw.close();
    await until(
      'both replicas counted it',
      async () =>
        (await counterValue(busMetrics.invalidMessages, { source: RegistryBucket.name })) >=
        before + 2,
    );
    await c2.register(registration({ instanceId: 'after-garbage' }));
    const listed = await until('replica 1 still serves', async () => {
      const all = await c1.list('orders');
      return all.some((i) => i.instanceId === 'after-garbage') ? all : undefined;
    });
    assert.equal(
      listed.some((i) => i.instanceId === 'garbage-1'),
      false,
    );
  });
});

describe('readiness', () => {
  test('gRPC health and /readyz say NOT_SERVING until the registry view is loaded', async (t) => {
    const cluster = await NatsCluster.start();
    const bus = await Bus.connect({ servers: cluster.servers, name: 'test-preload' });
    const cleanup: Array<() => unknown> = [() => cluster.close(), () => bus.close()];
    // Hooks run in registration order; tear down in reverse, the cluster last.
    t.after(async () => {
      for (const step of cleanup.reverse()) await step();
    });
    await bus.provision();
    const store = await bus.store(RegistryBucket);
    const now = Date.now();
    const PRELOADED = 3000;
    await Promise.all(
      Array.from({ length: PRELOADED }, (_, i) =>
        store.put({
          serviceId: 'preload',
          instanceId: `p-${i}`,
          address: '127.0.0.1:9000',
          grpcServices: [],
          status: InstanceStatus.UP,
          metadata: {},
          leaseSeconds: 300,
          registeredAtMs: now,
          renewedAtMs: now,
          launcherId: '',
          hostId: '',
          version: '',
        }),
      ),
    );
    const { DiscoveryReplica } = await import('../../services/discovery/replica.js');
    const { pino } = await import('pino');
    const replica = await DiscoveryReplica.start({
      replicaId: 'late',
      bus: { servers: cluster.servers },
      grpcListen: '127.0.0.1:0',
      adminPort: 0,
      logger: pino({ level: 'warn' }),
      access: TESTER_ACCESS,
    });
    cleanup.push(() => replica.stop());
    const readyz = async () => (await fetch(`http://127.0.0.1:${replica.adminPort}/readyz`)).status;
    const client = new TestRegistryClient(replica.grpcAddress);
    cleanup.push(() => client.close());
    let sawNotReady = false;
    let sizeWhenReady = -1;
    await until('ready', async () => {
      const status = await readyz();
      if (status === 503) sawNotReady = true;
      if (status !== 200) return false;
      sizeWhenReady = (await client.list('preload')).length;
      return true;
    });
    assert.ok(sawNotReady, '/readyz answered 503 while the view was loading');
    assert.equal(sizeWhenReady, PRELOADED, 'ready only with the whole registry loaded');
  });
});
