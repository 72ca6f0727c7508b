/**
 * What the bus layer relies on from nats-server, checked on a real 3-node cluster with
 * R3 file storage: first-writer-wins creates, server-side expiry seen by every watcher,
 * and purges that do not make a watcher skip other keys' writes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { type Bus, KeyExistsError, KvStore, RegistryBucket } from '../../bus/index.js';
import { sleep } from '../../services/common/sleep.js';
import { connectEach, startBusCluster } from '../support/bus-cluster.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { losingFirstAck, openBucket, rawConnection } from '../support/raw-nats.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

describe('nats-server guarantees on R3', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  /** One connection per node. */
  let nodes: Bus[];

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-guarantees'));
    nodes = await connectEach(cluster, 'test-guarantees');
  });
  after(async () => {
    for (const node of nodes ?? []) await node.close();
    await bus?.close();
    await cluster?.close();
  });

  test('200 concurrent creates of one key from three nodes: exactly one winner, every round', async () => {
    const stores = await Promise.all(nodes.map((node) => node.store(RegistryBucket)));
    const ROUNDS = 20;
    const WRITERS = 200;
    for (let round = 0; round < ROUNDS; round++) {
      const instanceId = 'contended';
      const outcomes = await Promise.allSettled(
        Array.from({ length: WRITERS }, (_, i) =>
          stores[i % stores.length]!.create(
            samples.instance({ instanceId, launcherId: `writer-${i}`, leaseSeconds: 3600 }),
          ),
        ),
      );
      const winners = outcomes.filter((o) => o.status === 'fulfilled');
      const losers = outcomes.filter((o) => o.status === 'rejected');
      assert.equal(winners.length, 1, `round ${round}: ${winners.length} winners`);
      for (const loser of losers) assert.ok(loser.reason instanceof KeyExistsError);
      // The stored value is the winner's: its revision is the one the winner was told.
      const stored = await stores[0]!.get(RegistryBucket.key(samples.instance({ instanceId })));
      assert.equal(stored?.revision, (winners[0] as PromiseFulfilledResult<number>).value);
      // Every later round races on a key that held a value and was removed.
      await stores[round % stores.length]!.remove(RegistryBucket.key(stored!.value));
    }
  });

  test('a compare-and-set write whose acknowledgement was lost is reported as the write that landed', async () => {
    const nc = await rawConnection(cluster.servers);
    try {
      const kv = await openBucket(nc, RegistryBucket.name);
      const store = (js: ReturnType<typeof losingFirstAck>) =>
        new KvStore(
          js,
          kv,
          RegistryBucket,
          pino({ level: 'silent' }),
          new AbortController().signal,
        );
      const reader = await nodes[1]!.store(RegistryBucket);
      const value = samples.instance({ instanceId: 'lost-ack', leaseSeconds: 3600 });
      const key = RegistryBucket.key(value);

      // The create landed; its retry must not find "the key exists" and call it lost.
      const created = await store(losingFirstAck(nc)).create(value);
      assert.equal((await reader.get(key))?.revision, created);

      // The same for an update on a revision: its retry is not "the key changed".
      const renewed = { ...value, renewedAtMs: value.renewedAtMs + 1000 };
      const updated = await store(losingFirstAck(nc)).update(renewed, created);
      const stored = await reader.get(key);
      assert.equal(stored?.revision, updated);
      assert.equal(stored?.value.renewedAtMs, renewed.renewedAtMs);
    } finally {
      await nc.close();
    }
  });

  test('a value written with a lifetime is removed by the server, and every watcher hears it', async (t) => {
    const stores = await Promise.all(nodes.map((node) => node.store(RegistryBucket)));
    const views = stores.map((store) => store.view());
    await Promise.all(views.map((view) => view.ready));
    const value = samples.instance({ instanceId: 'short-lived', leaseSeconds: 2 });
    const key = RegistryBucket.key(value);
    // Entry listeners hear the watch itself: the server's marker, not the view's own timer.
    const heard = views.map(
      (view) =>
        new Promise<number>((resolve) =>
          view.onEntry(
            (change) => change.op === 'remove' && change.key === key && resolve(Date.now()),
          ),
        ),
    );
    await stores[0]!.put(value);
    const times = await Promise.all(heard);
    const late = times.map((at) => at - value.renewedAtMs);
    t.diagnostic(`server removal heard ${late.join(', ')} ms after the write (lease 2000 ms)`);
    for (const ms of late) assert.ok(ms <= 3000, `heard ${ms} ms after the write`);
    for (const view of views) assert.equal(view.get(key), undefined);
    // Gone from the bucket itself, not only from the readers' views.
    assert.equal(await stores[1]!.get(key), undefined);
    // A renewal before the lifetime ends keeps the key. Deliberate pauses: time must
    // pass for the first write's 2 s lifetime to end (2.4 s), and nothing announces
    // that a removal did not happen.
    const renewed = samples.instance({ instanceId: 'renewed', leaseSeconds: 2 });
    await stores[0]!.put(renewed);
    await sleep(1200);
    await stores[0]!.put({ ...renewed, renewedAtMs: Date.now() });
    await sleep(1200);
    assert.ok(await stores[2]!.get(RegistryBucket.key(renewed)));
    for (const view of views) view.stop();
  });

  test('a removed key (a purge) does not make a watcher skip the writes of other keys', async () => {
    const store = await bus.store(RegistryBucket);
    const reader = await nodes[2]!.store(RegistryBucket);
    const view = reader.view();
    await view.ready;
    const KEYS = 300;
    const writes: Promise<number>[] = [];
    for (let i = 0; i < KEYS; i++) {
      writes.push(store.put(samples.instance({ instanceId: `purge-${i}`, leaseSeconds: 3600 })));
      // Purges interleaved with writes the watcher has not delivered yet.
      if (i % 30 === 29) writes.push(store.remove(`orders.purge-${i - 10}`).then(() => 0));
    }
    await Promise.all(writes);
    const expected = Array.from({ length: KEYS }, (_, i) => i).filter(
      (i) => !(i % 30 === 19 && i + 10 < KEYS),
    );
    await until('the view holds every key that was not purged', () =>
      expected.every((i) => view.get(`orders.purge-${i}`) !== undefined),
    );
    for (let i = 19; i + 10 < KEYS; i += 30) {
      assert.equal(view.get(`orders.purge-${i}`), undefined, `purge-${i} was purged`);
    }
    view.stop();
  });
});
