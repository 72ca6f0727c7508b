import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import protobuf from 'protobufjs';
import {
  type Bus,
  DEADLETTER_STREAM,
  DeadLetterHeaders,
  EVENTS_STREAM,
  Headers,
  type KvChange,
  RegistryBucket,
  type ServiceInstance,
  Subjects,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { rawConnection } from '../support/raw-nats.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

const EXITED = halyard.launcher.v1.LifecycleEvent.Kind.EXITED;

describe('subscriber SDK on a 3-node cluster', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let raw: NatsConnection;
  const logs = captureLogs('warn');
  const children: ChildProcess[] = [];

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-sdk', logs.logger));
    raw = await rawConnection(cluster.servers);
  });
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await raw?.close();
    await bus?.close();
    await cluster?.close();
  });

  test('a durable extender killed mid-stream counts every event exactly once', async (t) => {
    const EVENTS = 3000;
    const publisher = bus.publisher();
    let lastSeq = 0;
    for (let i = 0; i < EVENTS; i++) {
      const event = samples.lifecycleEvent({
        eventId: `exactly-once-${i}`,
        kind: EXITED,
        component: 'orders',
      });
      lastSeq = (await publisher.publish({ source: 'lifecycle', event })).seq;
    }
    const state = join(await mkdtemp(join(tmpdir(), 'halyard-extender-')), 'exits.json');
    const readState = async () =>
      JSON.parse(await readFile(state, 'utf8').catch(() => '{"lastSeq":0,"exits":{}}')) as {
        lastSeq: number;
        exits: Record<string, number>;
      };
    const start = () => {
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          'examples/restart-counter.ts',
          '--servers',
          cluster.servers.join(','),
          '--state',
          state,
          '--durable',
          'exactly-once',
        ],
        { stdio: 'ignore' },
      );
      children.push(child);
      return child;
    };

    const first = start();
    const exited = new Promise((resolve) => first.once('exit', resolve));
    const atKill = await until(
      'a third of the events counted',
      async () => {
        const s = await readState();
        return s.lastSeq >= lastSeq - (EVENTS * 2) / 3 && s;
      },
      30_000,
    );
    first.kill('SIGKILL');
    await exited;
    assert.ok(atKill.lastSeq < lastSeq, 'killed before the end of the stream');
    t.diagnostic(`killed after ${atKill.exits.orders} of ${EVENTS} events`);

    const second = start();
    const final = await until(
      'every event counted',
      async () => {
        const s = await readState();
        return s.lastSeq === lastSeq && s;
      },
      30_000,
    );
    second.kill('SIGTERM');
    assert.equal(final.exits.orders, EVENTS);
  });

  test('a poison message is dead-lettered after N attempts and does not block the next', async () => {
    const attempts: number[] = [];
    const handled: string[] = [];
    const sub = await bus.subscribe(
      { kind: 'gateway', durable: 'poison-test', maxAttempts: 3, retryDelayMs: 20 },
      ({ event }, meta) => {
        if (event.eventId === 'poison') {
          attempts.push(meta.attempt);
          throw new Error('cannot handle this one');
        }
        handled.push(event.eventId);
      },
    );
    const publisher = bus.publisher();
    const poison = await publisher.publish({
      source: 'gateway',
      event: samples.gatewayEvent({ eventId: 'poison' }),
    });
    await publisher.publish({
      source: 'gateway',
      event: samples.gatewayEvent({ eventId: 'after-poison' }),
    });
    await until('the next message is handled', () => handled.includes('after-poison'));
    await until('three attempts', () => attempts.length >= 3);
    await sub.stop();
    assert.deepEqual(attempts, [1, 2, 3]);

    const consumer = await jetstream(raw).consumers.get(DEADLETTER_STREAM, {
      filter_subjects: Subjects.deadLetter('poison-test'),
      deliver_policy: DeliverPolicy.All,
    });
    const dead = await consumer.next({ expires: 5000 });
    assert.ok(dead, 'a dead letter was stored');
    assert.equal(
      dead.headers?.get(DeadLetterHeaders.reason),
      'handler failed: cannot handle this one',
    );
    assert.equal(dead.headers?.get(DeadLetterHeaders.stream), EVENTS_STREAM);
    assert.equal(dead.headers?.get(DeadLetterHeaders.seq), String(poison.seq));
    assert.equal(dead.headers?.get(Headers.type), 'halyard.gateway.v1.GatewayEvent');
  });

  test('snapshot then follow: the extender state equals the bucket after concurrent writes', async () => {
    const store = await bus.store(RegistryBucket);
    const writer = async (prefix: string, count: number) => {
      for (let i = 0; i < count; i++) {
        const id = `${prefix}-${i % 20}`;
        if (i % 7 === 6) await store.remove(`orders.${id}`);
        else
          await store.put(
            samples.instance({ instanceId: id, leaseSeconds: 3600, version: String(i) }),
          );
      }
    };
    const early = writer('snap-a', 100);
    const snapshot = await bus.snapshot('registrations');
    const state = new Map(snapshot.entries);
    let applied = snapshot.revision;
    const sub = await bus.subscribe(
      { kind: 'registrations', from: { seq: snapshot.revision + 1 } },
      (change: KvChange<ServiceInstance>, meta) => {
        if (change.op === 'put') state.set(change.key, change.value);
        else state.delete(change.key);
        applied = meta.seq;
      },
    );
    await Promise.all([early, writer('snap-b', 100)]);
    const truth = store.view();
    await truth.ready;
    await until('follower caught up', () => applied >= truth.lastRevision);
    await sub.stop();
    assert.deepEqual(new Map([...state].sort()), new Map([...truth.entries()].sort()));
    truth.stop();
  });

  test('an extender in any language decodes bus messages with the .proto files alone', async () => {
    const event = samples.lifecycleEvent({ eventId: 'polyglot-1' });
    const { seq } = await bus.publisher().publish({ source: 'lifecycle', event });
    const captured = await (await jetstreamManager(raw)).streams.getMessage(EVENTS_STREAM, { seq });
    // A generic decoder: the .proto sources, and the type named in the message header.
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => join('proto', target);
    await root.load([
      'halyard/launcher/v1/lifecycle.proto',
      'halyard/gateway/v1/events.proto',
      'halyard/discovery/v1/events.proto',
    ]);
    assert.ok(captured);
    const typeName = captured.header.get(Headers.type);
    assert.equal(typeName, 'halyard.launcher.v1.LifecycleEvent');
    const decoded = root
      .lookupType(typeName)
      .toObject(root.lookupType(typeName).decode(captured.data), {
        longs: Number,
        enums: String,
      });
    assert.equal(captured.subject, 'halyard.events.lifecycle.host-a.gateway.exited');
    assert.equal(decoded.eventId, 'polyglot-1');
    assert.equal(decoded.kind, 'EXITED');
    assert.equal(decoded.exitCode, 137);
    assert.equal(decoded.occurredAtMs, event.occurredAtMs);
  });
});
