import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  AffinityBucket,
  Bus,
  BusConfigError,
  CacheBucket,
  type EntryChange,
  KeyExistsError,
  Keys,
  RegistryBucket,
  type ServiceInstance,
  type ViewChange,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { captureLogs } from '../support/logs.js';
import { NatsCluster } from '../support/nats-cluster.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

const { InstanceStatus } = halyard.discovery.v1;

describe('typed stores and local views on a 3-node cluster', () => {
  let cluster: NatsCluster;
  let a: Bus;
  let b: Bus;
  const logs = captureLogs();

  before(async () => {
    cluster = await NatsCluster.start();
    a = await Bus.connect({ servers: cluster.servers[0]!, name: 'test-a', logger: logs.logger });
    b = await Bus.connect({ servers: cluster.servers[2]!, name: 'test-b', logger: logs.logger });
    await a.provision();
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await cluster?.close();
  });

  test('provisioning is idempotent, replicated 3 ways, and refuses a mismatched stream', async () => {
    assert.equal(a.replicas, 3);
    await b.provision();
    await assert.rejects(
      a.provision({ eventsMaxAgeMs: 60_000 }),
      (error: unknown) =>
        error instanceof BusConfigError &&
        /stream HALYARD_EVENTS: max_age is 604800000000000 on the server, Halyard expects 60000000000/.test(
          error.message,
        ),
    );
  });

  test('each store round-trips its type, and a view on B converges to writes on A', async () => {
    const cases = [
      [RegistryBucket, samples.instance()],
      [AffinityBucket, samples.preference()],
      [CacheBucket, samples.cacheEntry()],
    ] as const;
    for (const [spec, value] of cases) {
      const writer = await a.store(spec as typeof RegistryBucket);
      const view = (await b.store(spec as typeof RegistryBucket)).view();
      await view.ready;
      const key = spec.key(value as never);
      const revision = await writer.put(value as ServiceInstance);
      assert.deepEqual((await writer.get(key))?.value, value, `${spec.name}: authoritative read`);
      await until(`${spec.name} view on B`, () => view.revision(key) === revision);
      assert.deepEqual(view.get(key), value, `${spec.name}: view on B`);
      view.stop();
    }
  });

  test('a view that starts late loads what exists, then reports puts and removals', async () => {
    const store = await a.store(RegistryBucket);
    const first = samples.instance({ instanceId: 'late-1' });
    await store.put(first);
    const view = (await b.store(RegistryBucket)).view();
    await view.ready;
    assert.deepEqual(view.get(Keys.registry('orders', 'late-1')), first);

    const changes: ViewChange<ServiceInstance>[] = [];
    view.onChange((change) => changes.push(change));
    const draining = { ...first, status: InstanceStatus.DRAINING };
    await store.put(draining);
    // A removal is a purge, which takes the key's earlier messages with it: a watcher
    // that had not delivered the put yet would see only the removal (the key's last
    // state). The put is awaited first so that both changes are observable.
    await until('put seen', () => changes.length >= 1);
    await store.remove(RegistryBucket.key(first));
    await until('removal seen', () => changes.length >= 2);
    assert.deepEqual(changes, [
      {
        op: 'put',
        key: 'orders.late-1',
        value: draining,
        previous: first,
        revision: changes[0]?.op === 'put' ? changes[0].revision : -1,
      },
      { op: 'remove', key: 'orders.late-1', previous: draining, reason: 'deleted' },
    ]);
    assert.equal(view.get('orders.late-1'), undefined);
    view.stop();
  });

  test('readers apply expiry from the value; the server removes what lapsed', async () => {
    const store = await a.store(RegistryBucket);
    const view = (await b.store(RegistryBucket)).view();
    await view.ready;
    const removed: ViewChange<ServiceInstance>[] = [];
    view.onChange((change) => change.op === 'remove' && removed.push(change));
    const shortLease = samples.instance({
      instanceId: 'short',
      leaseSeconds: 1,
      renewedAtMs: Date.now(),
    });
    await store.put(shortLease);
    await until('short lease visible', () => view.get('orders.short'));
    await until('expiry announced', () => removed.find((c) => c.key === 'orders.short'), 5000);
    assert.equal(view.get('orders.short'), undefined, 'a lapsed value is invisible to readers');
    const expiry = removed.find((c) => c.key === 'orders.short');
    assert.equal(expiry?.op === 'remove' && expiry.reason, 'expired');

    // The value was written with its lease as a per-message TTL: the server removes it.
    await until(
      'removed from the bucket by the server',
      async () => !(await store.get('orders.short')),
      3000,
    );

    view.stop();
  });

  test('a value renewed before it lapses is not removed by the server at its earlier lifetime', async () => {
    const store = await a.store(RegistryBucket);
    const view = (await b.store(RegistryBucket)).view();
    await view.ready;
    // What reached the bus, not what the view decides by its own clock.
    const removals: string[] = [];
    view.onEntry((change: EntryChange<ServiceInstance>) => {
      if (change.op === 'remove') removals.push(change.key);
    });
    const lease = samples.instance({
      instanceId: 'renewed',
      leaseSeconds: 1,
      renewedAtMs: Date.now(),
    });
    await store.put(lease);
    const renewal = await store.put({ ...lease, renewedAtMs: Date.now(), leaseSeconds: 30 });
    // Written last with the first write's lifetime: once the server has removed it, the
    // first write's TTL has come due too.
    await store.put(
      samples.instance({ instanceId: 'witness', leaseSeconds: 1, renewedAtMs: Date.now() }),
    );
    await until(
      'the witness removed by the server',
      () => removals.includes('orders.witness'),
      5000,
    );
    assert.equal((await store.get('orders.renewed'))?.revision, renewal);
    assert.deepEqual(
      removals.filter((key) => key === 'orders.renewed'),
      [],
      'no removal of the renewed value reached the watch',
    );
    assert.equal(view.get('orders.renewed')?.leaseSeconds, 30);
    view.stop();
  });

  test('create refuses a live key and succeeds after a removal', async () => {
    const store = await a.store(RegistryBucket);
    const value = samples.instance({ instanceId: 'created' });
    await store.create(value);
    await assert.rejects(store.create(value), KeyExistsError);
    await store.remove(RegistryBucket.key(value));
    await store.create(value);
    assert.deepEqual((await store.get(RegistryBucket.key(value)))?.value, value);
  });

  test('an invalid value is rejected before it reaches the bus, naming the field', async () => {
    const store = await a.store(RegistryBucket);
    await assert.rejects(
      store.put(samples.instance({ instanceId: 'bad', leaseSeconds: 0 })),
      /leaseSeconds/,
    );
    assert.equal(await store.get('orders.bad'), undefined);
  });

  test('events: a republished event id is stored once; replays start where asked', async () => {
    const publisher = a.publisher();
    const first = samples.lifecycleEvent({ eventId: 'replay-1' });
    const ack = await publisher.publish({ source: 'lifecycle', event: first });
    const again = await publisher.publish({ source: 'lifecycle', event: first });
    assert.equal(again.duplicate, true);
    assert.equal(again.seq, ack.seq);
    const second = await publisher.publish({
      source: 'gateway',
      event: samples.gatewayEvent({ eventId: 'replay-2' }),
    });

    const seen = async (from: Parameters<Bus['subscribe']>[0]['from'], count: number) => {
      const got: string[] = [];
      const sub = await b.subscribe({ kind: 'events', from }, (e) => {
        got.push(e.event.eventId);
      });
      await until(`${count} events`, () => got.length >= count);
      await sub.stop();
      return got;
    };
    assert.deepEqual((await seen({ seq: ack.seq }, 2)).slice(0, 2), ['replay-1', 'replay-2']);
    assert.deepEqual(await seen({ seq: second.seq }, 1), ['replay-2']);
    const fromAll = await seen('all', 2);
    assert.ok(fromAll.indexOf('replay-1') < fromAll.indexOf('replay-2'));
  });

  test('a durable subscriber resumes after a restart where it left off', async () => {
    const publisher = a.publisher();
    const ids = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
    const received: string[] = [];
    const handler = (e: { event: { eventId: string } }) => {
      received.push(e.event.eventId);
    };
    const options = { durable: 'resume-test', kind: 'gateway' as const, from: 'new' as const };
    let sub = await b.subscribe(options, handler);
    for (const id of ids('before', 3))
      await publisher.publish({ source: 'gateway', event: samples.gatewayEvent({ eventId: id }) });
    await until('first batch', () => received.length >= 3);
    await sub.stop();
    for (const id of ids('while-down', 2))
      await publisher.publish({ source: 'gateway', event: samples.gatewayEvent({ eventId: id }) });
    sub = await b.subscribe(options, handler);
    await until('second batch', () => received.length >= 5);
    await sub.stop();
    assert.deepEqual(received, [...ids('before', 3), ...ids('while-down', 2)]);
  });
});
