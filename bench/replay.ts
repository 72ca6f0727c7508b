/**
 * Replay throughput of the subscriber SDK: N stored lifecycle events read back by a
 * durable subscriber (acknowledged one by one after the handler), against an ordered
 * (ephemeral) subscriber and a raw JetStream consumer without decoding, in the same
 * run. Bounded: N events (default 100,000) and 120 s per case.
 * Usage: bash bench/run.sh replay [--events N]
 */
import { parseArgs } from 'node:util';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { Bus, EVENTS_STREAM, type SubscribeOptions } from '../bus/index.js';
import { NatsCluster } from '../test/support/nats-cluster.js';
import { rawConnection } from '../test/support/raw-nats.js';
import * as samples from '../test/support/samples.js';

const { values } = parseArgs({ options: { events: { type: 'string', default: '100000' } } });
const EVENTS = Number(values.events);
const BUDGET_MS = 120_000;
const PUBLISHERS = 16;
const logger = pino({ level: 'warn' });

interface Result {
  readonly name: string;
  readonly count: number;
  readonly ms: number;
}

async function fill(bus: Bus): Promise<void> {
  const publishers = Array.from({ length: PUBLISHERS }, () => bus.publisher());
  const started = performance.now();
  await Promise.all(
    publishers.map(async (publisher, p) => {
      for (let i = p; i < EVENTS; i += PUBLISHERS) {
        const event = samples.lifecycleEvent({ eventId: `replay-bench-${i}` });
        await publisher.publish({ source: 'lifecycle', event });
      }
    }),
  );
  console.log(`stored ${EVENTS} events in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

async function sdk(
  bus: Bus,
  name: string,
  options: SubscribeOptions<'lifecycle'>,
): Promise<Result> {
  let count = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const started = performance.now();
  const sub = await bus.subscribe(options, () => {
    if (++count >= EVENTS) done();
  });
  await Promise.race([finished, new Promise((r) => setTimeout(r, BUDGET_MS))]);
  const ms = performance.now() - started;
  await sub.stop();
  return { name, count, ms };
}

/** The comparator: a plain nats.js consumer, as an extender without the SDK would write it. */
async function raw(servers: readonly string[]): Promise<Result> {
  const connection = await rawConnection(servers);
  const jsm = await jetstreamManager(connection);
  await jsm.consumers.add(EVENTS_STREAM, {
    durable_name: 'bench-raw',
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: 64,
  });
  const consumer = await jetstream(connection).consumers.get(EVENTS_STREAM, 'bench-raw');
  const messages = await consumer.consume({ max_messages: 64 });
  const started = performance.now();
  let count = 0;
  const deadline = started + BUDGET_MS;
  for await (const m of messages) {
    m.ack();
    if (++count >= EVENTS || performance.now() > deadline) break;
  }
  messages.stop();
  await connection.close();
  return {
    name: 'raw JetStream durable consumer, no decoding (ack each)',
    count,
    ms: performance.now() - started,
  };
}

async function main(): Promise<void> {
  const cluster = await NatsCluster.start();
  try {
    const bus = await Bus.connect({ servers: cluster.servers, name: 'bench-replay', logger });
    await bus.provision();
    await fill(bus);
    const results = [
      await sdk(bus, 'SDK durable subscriber (decode + validate + ack after handler)', {
        kind: 'lifecycle',
        durable: 'bench-durable',
        from: 'all',
      }),
      await sdk(bus, 'SDK ordered subscriber (decode + validate, no acks)', {
        kind: 'lifecycle',
        from: 'all',
      }),
      await raw(cluster.servers),
    ];
    const base = results[0]!;
    const rate = (r: Result) => r.count / (r.ms / 1000);
    console.log(
      `\nReplay of ${EVENTS} stored events (nats-server ${bus.server.version}, 3-node cluster, R3, file storage)`,
    );
    console.log('| case | events | seconds | events/s | ratio |');
    console.log('|---|---|---|---|---|');
    for (const r of results) {
      console.log(
        `| ${r.name} | ${r.count} | ${(r.ms / 1000).toFixed(2)} | ${Math.round(rate(r))} | ${(rate(r) / rate(base)).toFixed(2)}× |`,
      );
    }
    await bus.close();
  } finally {
    await cluster.close();
  }
}

await main();
