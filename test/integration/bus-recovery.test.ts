import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Bus, RegistryBucket } from '../../bus/index.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

const REGISTRATIONS = 50;
const EVENTS = 50;

describe('all three nodes killed and restarted', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let fresh: Bus | undefined;
  const logs = captureLogs('warn');

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-recovery', logs.logger));
  });
  after(async () => {
    await fresh?.close();
    await bus?.close();
    await cluster?.close();
  });

  test('every acknowledged registration and event is recovered from disk', async (t) => {
    const store = await bus.store(RegistryBucket);
    const written = [];
    for (let i = 0; i < REGISTRATIONS; i++) {
      const value = samples.instance({ instanceId: `r-${i}`, leaseSeconds: 3600 });
      await store.put(value);
      written.push(value);
    }
    const publisher = bus.publisher();
    const eventIds: string[] = [];
    for (let i = 0; i < EVENTS; i++) {
      const event = samples.lifecycleEvent({ eventId: `recovery-${i}` });
      await publisher.publish({ source: 'lifecycle', event });
      eventIds.push(event.eventId);
    }

    for (let i = 0; i < cluster.nodes.length; i++) await cluster.killNode(i);
    const restartedAt = Date.now();
    await cluster.startAll();
    t.diagnostic(`cluster ready again ${Date.now() - restartedAt} ms after restart`);

    fresh = await Bus.connect({
      servers: cluster.servers,
      name: 'test-recovered',
      logger: logs.logger,
    });
    const view = (await fresh.store(RegistryBucket)).view();
    await view.ready;
    for (const value of written) assert.deepEqual(view.get(RegistryBucket.key(value)), value);
    view.stop();

    const replayed: string[] = [];
    const sub = await fresh.subscribe({ kind: 'lifecycle', from: 'all' }, (e) => {
      replayed.push(e.event.eventId);
    });
    await until('every event replayed', () => replayed.length >= EVENTS);
    await sub.stop();
    assert.deepEqual(replayed, eventIds);

    // The connection that lived through the outage writes again without a restart.
    const after = samples.instance({ instanceId: 'after-restart' });
    await store.put(after);
    assert.deepEqual((await store.get(RegistryBucket.key(after)))?.value, after);
  });
});
