/**
 * Does a KV watch stall after `kill -9` of the node it is on, and does a Halyard local
 * view (bus/view.ts, with its 2 s watchdog) get past it?
 *
 * Each round starts a fresh 3-node R3 cluster, so no round inherits the previous one's
 * elections. Two watchers of the registry bucket sit on node X, the bucket's stream
 * leader (where a watch's ordered consumer and its connection both live, the case that
 * stalls): a bare nats.js KV watch on a plain connection, and a Halyard local view on a
 * Bus. Node X is killed with SIGKILL, a writer on another node puts a key, and each
 * watcher's time from the put's acknowledgement to seeing it is taken, capped at 70 s.
 * Usage: npm run bench -- watch-stall [--rounds N]
 */
import { parseArgs } from 'node:util';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { pino } from 'pino';
import { Bus, kvStream, RegistryBucket } from '../bus/index.js';
import { sleep } from '../services/common/sleep.js';
import { NatsCluster } from '../test/support/nats-cluster.js';
import { rawConnection } from '../test/support/raw-nats.js';
import * as samples from '../test/support/samples.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '6' } } });
const ROUNDS = Number(values.rounds);
const CAP_MS = 70_000;
const STALLED_MS = 10_000;
const logger = pino({ level: 'error' });

interface Round {
  readonly killed: number;
  /** From the kill to the put's acknowledgement, ms. */
  readonly putAfterMs: number;
  /** From the acknowledgement until each watcher saw the put; undefined past the cap. */
  readonly bareMs: number | undefined;
  readonly viewMs: number | undefined;
}

/** Resolves with the time `seen()` first held, polling every 10 ms; undefined at `deadline`. */
async function seenAt(seen: () => boolean, deadline: number): Promise<number | undefined> {
  while (!seen()) {
    if (performance.now() > deadline) return undefined;
    await sleep(10);
  }
  return performance.now();
}

async function round(): Promise<{ version: string; result: Round }> {
  const cluster = await NatsCluster.start();
  const raw: { close(): Promise<void> }[] = [];
  const buses: Bus[] = [];
  try {
    const x = await cluster.streamLeader(kvStream(RegistryBucket.name));
    const other = (x + 1) % 3;
    const writer = await Bus.connect({
      servers: cluster.servers[other]!,
      name: 'bench-writer',
      logger,
    });
    buses.push(writer);
    const store = await writer.store(RegistryBucket);

    // (a) A bare KV watch, as any nats.js client would hold one.
    const nc = await rawConnection(cluster.servers[x]!);
    raw.push(nc);
    const kv = await new Kvm(jetstream(nc)).open(RegistryBucket.name);
    const bareSeen = new Set<string>();
    const bare = await kv.watch();
    void (async () => {
      for await (const entry of bare) bareSeen.add(entry.key);
    })();

    // (b) A Halyard local view, as a gateway holds the registry.
    const reader = await Bus.connect({ servers: cluster.servers[x]!, name: 'bench-view', logger });
    buses.push(reader);
    const view = (await reader.store(RegistryBucket)).view();
    await view.ready;

    const before = samples.instance({ instanceId: 'before', leaseSeconds: 3600 });
    await store.put(before);
    const beforeKey = RegistryBucket.key(before);
    const warm = performance.now() + 10_000;
    if (!(await seenAt(() => bareSeen.has(beforeKey) && !!view.get(beforeKey), warm))) {
      throw new Error('the watchers did not see a put before the kill');
    }

    const killedAt = performance.now();
    await cluster.killNode(x);
    const after = samples.instance({ instanceId: 'after', leaseSeconds: 3600 });
    await store.put(after);
    const ackedAt = performance.now();
    const afterKey = RegistryBucket.key(after);
    const deadline = ackedAt + CAP_MS;
    const [bareAt, viewAt] = await Promise.all([
      seenAt(() => bareSeen.has(afterKey), deadline),
      seenAt(() => !!view.get(afterKey), deadline),
    ]);
    bare.stop();
    view.stop();
    return {
      version: writer.server.version ?? 'unknown',
      result: {
        killed: x,
        putAfterMs: ackedAt - killedAt,
        bareMs: bareAt === undefined ? undefined : bareAt - ackedAt,
        viewMs: viewAt === undefined ? undefined : viewAt - ackedAt,
      },
    };
  } finally {
    for (const bus of buses) await bus.close().catch(() => {});
    for (const nc of raw) await nc.close().catch(() => {});
    await cluster.close();
  }
}

const shown = (ms: number | undefined) => (ms === undefined ? '>70 s' : `${Math.round(ms)}`);
/** Past the cap counts as the cap: a lower bound for medians and ratios. */
const capped = (ms: number | undefined) => ms ?? CAP_MS;

function median(sorted: readonly number[]): number {
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  const rounds: Round[] = [];
  let version = 'unknown';
  for (let i = 0; i < ROUNDS; i++) {
    const r = await round();
    version = r.version;
    rounds.push(r.result);
    console.error(
      `round ${i + 1}/${ROUNDS}: bare ${shown(r.result.bareMs)} ms, view ${shown(r.result.viewMs)} ms`,
    );
  }
  console.log(
    `\nA watch on the node killed with SIGKILL (nats-server ${version}, 3 nodes, R3, file storage; a fresh cluster per round; both watchers on the registry bucket's stream leader; put from another node; capped at 70 s)`,
  );
  console.log(
    '| round | node killed | put acknowledged after kill ms | bare KV watch sees it ms | Halyard view sees it ms |',
  );
  console.log('|---|---|---|---|---|');
  rounds.forEach((r, i) => {
    console.log(
      `| ${i + 1} | n${r.killed} | ${Math.round(r.putAfterMs)} | ${shown(r.bareMs)} | ${shown(r.viewMs)} |`,
    );
  });
  console.log('\n| watcher | median ms | max ms | rounds stalled > 10 s |');
  console.log('|---|---|---|---|');
  const summary = (name: string, pick: (r: Round) => number | undefined) => {
    const all = rounds.map(pick);
    const sorted = all.map(capped).sort((a, b) => a - b);
    const stalled = all.filter((ms) => ms === undefined || ms > STALLED_MS).length;
    const max = all.some((ms) => ms === undefined) ? '>70 s' : `${Math.round(sorted.at(-1)!)}`;
    console.log(
      `| ${name} | ${Math.round(median(sorted))} | ${max} | ${stalled} of ${rounds.length} |`,
    );
    return sorted;
  };
  const bare = summary('bare KV watch', (r) => r.bareMs);
  const view = summary('Halyard view (2 s watchdog)', (r) => r.viewMs);
  const ratio = (a: number, b: number) => (b > 0 ? (a / b).toFixed(2) : 'n/a');
  console.log(
    `\nview/bare: median ${ratio(median(view), median(bare))}, max ${ratio(view.at(-1)!, bare.at(-1)!)} (a watcher past 70 s counts as 70 s)`,
  );
}

await main();
