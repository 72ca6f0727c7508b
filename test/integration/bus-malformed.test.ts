import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import {
  type Bus,
  busMetrics,
  Codecs,
  EVENTS_STREAM,
  Headers,
  LogIds,
  RegistryBucket,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { captureLogs } from '../support/logs.js';
import { counterValue } from '../support/metrics.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { rawConnection } from '../support/raw-nats.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

/**
 * Bad messages come from outside Halyard's own writers (which validate), so these
 * tests put them on the bus with a raw NATS connection.
 */
describe('malformed bus messages are skipped, counted and logged once', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let connection: NatsConnection;
  const logs = captureLogs();

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-malformed', logs.logger));
    connection = await rawConnection(cluster.servers);
  });
  after(async () => {
    await connection?.close();
    await bus?.close();
    await cluster?.close();
  });

  /** Stores a raw message through JetStream and returns its sequence. */
  async function raw(subject: string, data: Uint8Array, type?: string): Promise<number> {
    const h = headers();
    if (type) h.set(Headers.type, type);
    const reply = await connection.request(subject, data, { headers: h, timeout: 5000 });
    return (reply.json() as { seq: number }).seq;
  }

  test('on the events stream: garbage, wrong type, missing header, invalid value', async () => {
    const before = await counterValue(busMetrics.invalidMessages, { source: EVENTS_STREAM });
    const invalidLogsBefore = logs.withId(LogIds.invalidMessage).length;
    const ordered: string[] = [];
    const durable: string[] = [];
    const ephemeral = await bus.subscribe({ kind: 'gateway', from: 'new' }, (e) => {
      ordered.push(e.event.eventId);
    });
    const resumable = await bus.subscribe({ kind: 'gateway', durable: 'malformed-test' }, (e) => {
      durable.push(e.event.eventId);
    });

    const gatewayType = Codecs.gatewayEvent.typeName;
    const validBytes = Codecs.gatewayEvent.encode(samples.gatewayEvent({ eventId: 'valid-1' }));
    const badSeqs = [
      await raw(
        'halyard.events.gateway.gw-1.ejected',
        new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]),
        gatewayType,
      ),
      await raw(
        'halyard.events.gateway.gw-1.ejected',
        validBytes,
        'halyard.launcher.v1.LifecycleEvent',
      ),
      await raw('halyard.events.gateway.gw-1.ejected', validBytes),
      await raw(
        'halyard.events.gateway.gw-1.ejected',
        halyard.gateway.v1.GatewayEvent.encode({
          ...samples.gatewayEvent(),
          gatewayId: 'not a token',
        }).finish(),
        gatewayType,
      ),
    ];
    await bus
      .publisher()
      .publish({ source: 'gateway', event: samples.gatewayEvent({ eventId: 'valid-2' }) });

    await until(
      'valid event after the bad ones',
      () => ordered.includes('valid-2') && durable.includes('valid-2'),
    );
    assert.deepEqual(ordered, ['valid-2']);
    assert.deepEqual(durable, ['valid-2']);
    await ephemeral.stop();
    await resumable.stop();

    // Two consumers each saw four bad messages.
    assert.equal(
      await counterValue(busMetrics.invalidMessages, { source: EVENTS_STREAM }),
      before + 8,
    );
    const logged = logs.withId(LogIds.invalidMessage).slice(invalidLogsBefore);
    assert.equal(logged.length, 8, 'one log line per bad message per consumer');
    assert.deepEqual(
      [...new Set(logged.map((line) => line.seq))].sort(),
      [...badSeqs].sort(),
      'each line names the sequence',
    );
    assert.ok(logged.every((line) => line.subject === 'halyard.events.gateway.gw-1.ejected'));
    assert.match(
      String(logged.find((line) => line.seq === badSeqs[1])?.reason),
      /type header is "halyard\.launcher\.v1\.LifecycleEvent"/,
    );
    assert.match(
      String(logged.find((line) => line.seq === badSeqs[2])?.reason),
      /no Halyard-Type header/,
    );
    assert.match(String(logged.find((line) => line.seq === badSeqs[3])?.reason), /gatewayId/);

    // The durable terminated the bad messages: a restart does not see them again.
    const again: string[] = [];
    const resumed = await bus.subscribe({ kind: 'gateway', durable: 'malformed-test' }, (e) => {
      again.push(e.event.eventId);
    });
    await bus
      .publisher()
      .publish({ source: 'gateway', event: samples.gatewayEvent({ eventId: 'valid-3' }) });
    await until('valid-3', () => again.includes('valid-3'));
    await resumed.stop();
    assert.deepEqual(again, ['valid-3']);
  });

  test('in a bucket: a local view skips an invalid value and keeps going', async () => {
    const source = RegistryBucket.name;
    const before = await counterValue(busMetrics.invalidMessages, { source });
    const store = await bus.store(RegistryBucket);
    const view = store.view();
    await view.ready;
    const good = samples.instance({ instanceId: 'good-1' });
    await store.put(good);
    await raw(`$KV.${source}.orders.good-1`, new Uint8Array([1, 2, 3, 4, 5]));
    await until('invalid value dropped', () => view.get('orders.good-1') === undefined);
    const next = samples.instance({ instanceId: 'good-2' });
    await store.put(next);
    await until('next valid value', () => view.get('orders.good-2'));
    assert.deepEqual(view.get('orders.good-2'), next);
    assert.equal(await counterValue(busMetrics.invalidMessages, { source }), before + 1);
    const line = logs.withId(LogIds.invalidMessage).find((l) => l.source === source);
    assert.equal(line?.subject, 'orders.good-1');
    assert.equal(await store.get('orders.good-1'), undefined, 'authoritative reads skip it too');
    view.stop();
  });
});
