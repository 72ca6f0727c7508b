/**
 * The cache service on a real 3-node cluster with two replicas (A on n0, B on n2),
 * called over gRPC on loopback, against comparators measured in the same run:
 *   - Put through the service vs a direct bus KvStore put of the same CacheEntry;
 *   - Get through the service vs an in-process Map get and the client's in-memory fallback;
 *   - write on A → visible on B: service Put on A until B's Watch stream delivers it,
 *     vs a direct KvStore put until B's local view has it.
 * Loops are bounded in count and time. Usage: bash bench/run.sh cache [--count N]
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Bus, CacheBucket, type CacheEntry, kvStream } from '../bus/index.js';
import { createCacheClient } from '../services/cache/client.js';
import { startReplica, tokensFor } from '../test/support/cache.js';
import { NatsCluster } from '../test/support/nats-cluster.js';
import { measure, printTable } from './latency.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '2000' },
    'value-bytes': { type: 'string', default: '256' },
  },
});
const COUNT = Number(values.count);
const VALUE = new Uint8Array(Number(values['value-bytes'])).fill(7);
const TIME_BUDGET_MS = 30_000;
const sample = (name: string, op: (i: number) => Promise<unknown>) =>
  measure(name, op, { count: COUNT, budgetMs: TIME_BUDGET_MS });
const KEYS = 500;
const logger = pino({ level: 'warn' });

const keyOf = (i: number) => `bench/${i % KEYS}`;

async function main(): Promise<void> {
  const cluster = await NatsCluster.start();
  const config = { tokens: tokensFor(['bench']) };
  const a = await startReplica([cluster.servers[0]!], 'bench-cache-a', config, logger);
  const b = await startReplica([cluster.servers[2]!], 'bench-cache-b', config, logger);
  const onA = createCacheClient({ address: a.address, token: 'token-bench' });
  const onB = createCacheClient({ address: b.address, token: 'token-bench' });
  const direct = await Bus.connect({ servers: cluster.servers[0]!, name: 'bench-direct', logger });
  try {
    const leader = await cluster.streamLeader(kvStream(CacheBucket.name));
    console.log(
      `nats-server ${direct.server.version}; ${kvStream(CacheBucket.name)} leader n${leader}; replica A on n0, B on n2; ${VALUE.byteLength}-byte values, ${KEYS} keys`,
    );
    const store = await direct.store(CacheBucket);
    const entry = (i: number, stamp = Date.now()): CacheEntry => ({
      namespace: 'bench',
      key: keyOf(i),
      value: VALUE,
      createdAtMs: stamp,
      updatedAtMs: stamp,
      expiresAtMs: 0,
    });

    printTable('Put (sequential, acknowledged)', [
      await sample('cache Put via gRPC → replica A', (i) => onA.put(keyOf(i), VALUE)),
      await sample('direct bus KvStore put (no service)', (i) => store.put(entry(i))),
    ]);

    const map = new Map<string, Uint8Array>();
    for (let i = 0; i < KEYS; i++) map.set(keyOf(i), VALUE);
    const memory = createCacheClient({ namespace: 'bench' });
    for (let i = 0; i < KEYS; i++) await memory.put(keyOf(i), VALUE);
    printTable('Get (sequential)', [
      await sample('cache Get via gRPC → replica B', async (i) => {
        if (!(await onB.get(keyOf(i)))) throw new Error(`missing ${keyOf(i)}`);
      }),
      await sample('in-process Map get', async (i) => map.get(keyOf(i))),
      await sample('client in-memory fallback get', (i) => memory.get(keyOf(i))),
    ]);

    // Write on A, visible on B: B's Watch stream (service) or B's local view (bus).
    const watched = new Map<string, () => void>();
    const stopWatch = onB.watch((change) => {
      if (change.kind === 'put') watched.get(change.item.key)?.();
    });
    const viewed = new Map<string, () => void>();
    const viewOnB = (await b.bus.store(CacheBucket)).view();
    await viewOnB.ready;
    viewOnB.onChange((change) => {
      if (change.op === 'put') viewed.get(`${change.value.key}@${change.value.updatedAtMs}`)?.();
    });
    const seenOnB = (key: string) => new Promise<void>((resolve) => watched.set(key, resolve));
    // The Watch stream opens asynchronously: wait until it delivers.
    for (let open = false; !open; ) {
      const seen = seenOnB('probe').then(() => true);
      await onA.put('probe', VALUE);
      open = await Promise.race([seen, new Promise<boolean>((r) => setTimeout(r, 200, false))]);
    }
    printTable('Write on A → visible on B', [
      await sample('cache Put on A → Watch event on B (gRPC both ends)', async (i) => {
        const seen = seenOnB(keyOf(i));
        await onA.put(keyOf(i), VALUE);
        await seen;
      }),
      await sample('bus KvStore put → local view on B (no service)', async (i) => {
        const next = entry(i, Date.now() + 1_000_000 + i);
        const tag = `${next.key}@${next.updatedAtMs}`;
        const seen = new Promise<void>((resolve) => viewed.set(tag, resolve));
        await store.put(next);
        await seen;
        viewed.delete(tag);
      }),
    ]);
    stopWatch();
    viewOnB.stop();
  } finally {
    onA.close();
    onB.close();
    await a.close();
    await b.close();
    await direct.close();
    await cluster.close();
  }
}

await main();
