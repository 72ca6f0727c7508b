/**
 * KV write latency and local-view propagation on a real 3-node cluster, against
 * comparators measured in the same run:
 *   - KV put, R3 (3-node cluster) vs R1 (single node) vs a core NATS request/reply;
 *   - propagation (put on A until B's local view has it) vs the same request/reply
 *     round trip between the two nodes (a lower bound: two hops, no storage).
 * Loops are bounded in count and time. Usage: bash bench/run.sh kv [--count N]
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Bus, type Codec, kvStream, RegistryBucket, Subjects } from '../bus/index.js';
import { sleep } from '../services/common/sleep.js';
import { NatsCluster } from '../test/support/nats-cluster.js';
import * as samples from '../test/support/samples.js';
import { measure, printTable, type Row } from './latency.js';

const { values } = parseArgs({ options: { count: { type: 'string', default: '2000' } } });
const COUNT = Number(values.count);
const TIME_BUDGET_MS = 30_000;
const sample = (name: string, op: (i: number) => Promise<unknown>) =>
  measure(name, op, { count: COUNT, budgetMs: TIME_BUDGET_MS });
const logger = pino({ level: 'warn' });

/** Interest on node B reaches node A a moment after B subscribes. */
async function untilRouted(probe: () => Promise<unknown>): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await probe();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(20);
    }
  }
}

async function kvPut(bus: Bus, name: string): Promise<Row> {
  const store = await bus.store(RegistryBucket);
  const value = samples.instance({ leaseSeconds: 3600 });
  return sample(name, async (i) => {
    await store.put({ ...value, instanceId: `bench-${i < 0 ? `w${-i}` : i % 500}` });
  });
}

/** Bytes as they are: the comparator measures the bus's request/reply, not a codec. */
const bytes: Codec<Uint8Array> = {
  typeName: 'bench.Bytes',
  encode: (value) => value,
  decode: (value) => value,
};

/** Control request/reply between two replicas: core NATS, no JetStream, no storage. */
async function controlRequest(a: Bus, b: Bus): Promise<Row> {
  const subject = Subjects.control('bench', 'echo', 'ping');
  const codecs = { request: bytes, reply: bytes };
  const served = await b.serve([subject], codecs, async (value) => value);
  const payload = new Uint8Array(200);
  await untilRouted(() => a.request(subject, payload, codecs, 1000));
  const row = await sample('control request/reply, core NATS (A → B → A)', async () => {
    await a.request(subject, payload, codecs, 5000);
  });
  served.stop();
  return row;
}

async function propagation(a: Bus, b: Bus): Promise<Row> {
  const writer = await a.store(RegistryBucket);
  const view = (await b.store(RegistryBucket)).view();
  await view.ready;
  const waiting = new Map<string, () => void>();
  view.onChange((change) => {
    if (change.op === 'put') waiting.get(`${change.key}@${change.value.renewedAtMs}`)?.();
  });
  const value = samples.instance({ leaseSeconds: 3600 });
  let stamp = Date.now();
  const row = await sample('KV put on A → local view on B (R3)', async (i) => {
    const next = { ...value, instanceId: `prop-${i < 0 ? 'w' : i % 500}`, renewedAtMs: ++stamp };
    const key = `${RegistryBucket.key(next)}@${next.renewedAtMs}`;
    const seen = new Promise<void>((resolve) => waiting.set(key, resolve));
    await writer.put(next);
    await seen;
    waiting.delete(key);
  });
  view.stop();
  return row;
}

async function main(): Promise<void> {
  const three = await NatsCluster.start();
  const single = await NatsCluster.start({ nodes: 1 });
  const synced = await NatsCluster.start({ syncInterval: 'always' });
  try {
    const a = await Bus.connect({ servers: three.servers[0]!, name: 'bench-a', logger });
    const b = await Bus.connect({ servers: three.servers[2]!, name: 'bench-b', logger });
    const solo = await Bus.connect({ servers: single.servers, name: 'bench-solo', logger });
    const fsync = await Bus.connect({ servers: synced.servers, name: 'bench-fsync', logger });
    await a.provision();
    await solo.provision();
    await fsync.provision();
    // Writes go through the stream leader: whether A sits on it changes the hop count.
    const leader = await three.streamLeader(kvStream(RegistryBucket.name));
    console.log(
      `nats-server ${a.server.version}; ${kvStream(RegistryBucket.name)} leader n${leader}; A on n0, B on n2`,
    );

    printTable('KV put (sequential, acknowledged)', [
      await kvPut(a, 'KV put, R3, 3-node cluster'),
      await kvPut(fsync, 'KV put, R3, 3-node cluster, sync_interval: always'),
      await kvPut(solo, 'KV put, R1, single node'),
      await controlRequest(a, b),
    ]);
    printTable('Propagation to another replica', [
      await propagation(a, b),
      await controlRequest(a, b),
    ]);
    await Promise.all([a.close(), b.close(), solo.close(), fsync.close()]);
  } finally {
    await three.close();
    await single.close();
    await synced.close();
  }
}

await main();
