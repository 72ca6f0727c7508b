/**
 * Failover figures: `kill -9` of the leader of each bucket and of each stream, in turn
 * (every one is its own RAFT group with its own leader), under a stream of sequential acknowledged writes, while clients call
 * through a gateway. For each: the longest time without an acknowledged write, the
 * acknowledged writes missing afterwards (must be 0) and the gateway calls that failed
 * meanwhile (must be 0: the data plane routes from its local view, never from the bus).
 * Usage: npm run bench -- failover [--writes N]
 */
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import {
  AffinityBucket,
  AllBuckets,
  Bus,
  CacheBucket,
  ConfigBucket,
  DEADLETTER_STREAM,
  EVENTS_STREAM,
  type KvStore,
  kvStream,
  LaunchersBucket,
  LeaseBucket,
  RegistryBucket,
  RolloutsBucket,
  Subjects,
} from '../bus/index.js';
import { retryTransient } from '../bus/retry.js';
import { halyard } from '../proto/gen/halyard.js';
import { echoClient, startEchoServer } from '../test/support/echo-service.js';
import { register, startGateway } from '../test/support/gateway.js';
import { NatsCluster } from '../test/support/nats-cluster.js';
import { rawConnection } from '../test/support/raw-nats.js';
import * as samples from '../test/support/samples.js';

const { values } = parseArgs({ options: { writes: { type: 'string', default: '200' } } });
const WRITES = Number(values.writes);
const BUDGET_MS = 60_000;
const logger = pino({ level: 'error' });

interface Target {
  readonly name: string;
  readonly stream: string;
  /** Writes entry `i`; resolves on the bus's acknowledgement. */
  write(i: number): Promise<unknown>;
  /** How many of entries 0…n-1 the bus holds now. */
  stored(n: number): Promise<number>;
}

async function kvTarget<T>(
  store: KvStore<T>,
  name: string,
  value: (i: number) => T,
): Promise<Target> {
  return {
    name,
    stream: kvStream(store.spec.name),
    write: (i) => store.put(value(i)),
    stored: async (n) => {
      let found = 0;
      for (let i = 0; i < n; i++) if (await store.get(store.spec.key(value(i)))) found++;
      return found;
    },
  };
}

function eventsTarget(bus: Bus): Target {
  const run = `failover-${Date.now()}`;
  const publisher = bus.publisher();
  return {
    name: 'event publish',
    stream: EVENTS_STREAM,
    write: (i) =>
      publisher.publish({
        source: 'lifecycle',
        event: samples.lifecycleEvent({ eventId: `${run}/${i}` }),
      }),
    stored: async (n) => {
      const seen = new Set<string>();
      await bus.replay({ kind: 'lifecycle' }, ({ event }) => {
        if (event.eventId.startsWith(run)) seen.add(event.eventId);
      });
      return seen.size >= n ? n : seen.size;
    },
  };
}

/**
 * Dead letters as a durable subscriber writes them (subscriber.ts): a JetStream publish
 * with a de-duplication id, retried while the stream has no leader. The payload is any
 * bytes: the stream stores what a subscriber gave up on.
 */
async function deadLetterTarget(servers: readonly string[]): Promise<{
  target: Target;
  close(): Promise<void>;
}> {
  const nc = await rawConnection(servers);
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const run = `failover-${Date.now()}`;
  const seqs: number[] = [];
  return {
    target: {
      name: 'dead letter',
      stream: DEADLETTER_STREAM,
      write: async (i) => {
        const ack = await retryTransient(() =>
          js.publish(Subjects.deadLetter('bench'), new TextEncoder().encode(`${run}/${i}`), {
            msgID: `${run}/${i}`,
          }),
        );
        seqs[i] = ack.seq;
      },
      stored: async (n) => {
        let found = 0;
        for (const seq of seqs.slice(0, n)) {
          const m = await jsm.streams.getMessage(DEADLETTER_STREAM, { seq }).catch(() => null);
          if (m) found++;
        }
        return found;
      },
    },
    close: () => nc.close(),
  };
}

/** Sequential calls through the gateway until stopped; counts the failed ones. */
function callLoop(address: string): { stop(): Promise<{ calls: number; failed: number }> } {
  const client = echoClient(address);
  let running = true;
  let calls = 0;
  let failed = 0;
  const loop = (async () => {
    while (running) {
      await new Promise<void>((resolve) => {
        client.unary({}, new grpc.Metadata(), { deadline: Date.now() + 2000 }, (error) => {
          calls++;
          if (error) failed++;
          resolve();
        });
      });
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      client.close();
      return { calls, failed };
    },
  };
}

async function killDuringWrites(cluster: NatsCluster, target: Target, gatewayAddress: string) {
  const calls = callLoop(gatewayAddress);
  const ackTimes: number[] = [];
  let killed = -1;
  const deadline = Date.now() + BUDGET_MS;
  for (let i = 0; i < WRITES && Date.now() < deadline; i++) {
    if (i === WRITES / 2) {
      killed = await cluster.streamLeader(target.stream);
      await cluster.killNode(killed);
    }
    await target.write(i);
    ackTimes.push(performance.now());
  }
  const { calls: made, failed } = await calls.stop();
  let stall = 0;
  for (let i = 1; i < ackTimes.length; i++)
    stall = Math.max(stall, ackTimes[i]! - ackTimes[i - 1]!);
  const acked = ackTimes.length;
  const lost = acked - (await target.stored(acked));
  await cluster.startNode(killed);
  await cluster.waitReady();
  // Every stream back to three current replicas before the next leader is killed.
  for (const stream of [
    EVENTS_STREAM,
    DEADLETTER_STREAM,
    ...AllBuckets.map((b) => kvStream(b.name)),
  ]) {
    await cluster.streamLeader(stream);
  }
  return { killed, stall, acked, lost, made, failed };
}

async function main(): Promise<void> {
  const cluster = await NatsCluster.start();
  let deadLetters: Awaited<ReturnType<typeof deadLetterTarget>> | undefined;
  const echoes = await Promise.all(
    [1, 2, 3].map((n) => startEchoServer({ instanceId: `echo-${n}`, recordCalls: false })),
  );
  try {
    const writer = await Bus.connect({ servers: cluster.servers, name: 'bench-writer', logger });
    await writer.provision();
    const gatewayBus = await Bus.connect({ servers: cluster.servers, name: 'bench-gw', logger });
    for (const echo of echoes) {
      await register(writer, {
        instanceId: echo.instanceId,
        address: echo.address,
        leaseSeconds: 3600,
      });
    }
    const gateway = await startGateway(gatewayBus, cluster.servers, logger);
    deadLetters = await deadLetterTarget(cluster.servers);
    const targets: Target[] = [
      await kvTarget(await writer.store(RegistryBucket), 'registry put', (i) =>
        samples.instance({ serviceId: 'bench', instanceId: `w-${i}`, leaseSeconds: 3600 }),
      ),
      await kvTarget(await writer.store(AffinityBucket), 'affinity put', (i) =>
        samples.preference({ userKey: samples.userKey(`user-${i}`), idleSeconds: 3600 }),
      ),
      await kvTarget(await writer.store(CacheBucket), 'cache put', (i) =>
        samples.cacheEntry({ key: `k-${i}`, expiresAtMs: 0 }),
      ),
      await kvTarget(await writer.store(LeaseBucket), 'lease put', (i) => ({
        name: `bench-${i}`,
        holder: 'bench',
        acquiredAtMs: Date.now(),
        renewedAtMs: Date.now(),
        ttlMs: 3_600_000,
      })),
      await kvTarget(await writer.store(LaunchersBucket), 'launcher children put', (i) => ({
        hostId: `host-${i}`,
        launcherId: 'bench',
        updatedAtMs: Date.now(),
        children: [],
      })),
      await kvTarget(await writer.store(RolloutsBucket), 'rollout put', (i) => ({
        version: i + 1,
        state: halyard.launcher.v1.Rollout.State.ROLLING,
        reason: '',
        hosts: [],
        updatedAtMs: Date.now(),
        createdAtMs: Date.now(),
      })),
      await kvTarget(await writer.store(ConfigBucket), 'config version put', (i) => ({
        version: i + 1,
        content: `# mesh configuration ${i + 1}\n`,
        author: 'bench',
        publishedAtMs: Date.now(),
        summary: '',
        basedOn: i,
        restartUnchanged: false,
      })),
      eventsTarget(writer),
      deadLetters.target,
    ];
    console.log(
      `\nkill -9 of each stream leader under writes (nats-server ${writer.server.version}, 3 nodes, R3, file storage; ${WRITES} sequential writes, leader killed after ${WRITES / 2}; calls through one gateway to 3 echo instances meanwhile)`,
    );
    console.log(
      '| writes to | stream | leader killed | longest write stall ms | acknowledged | lost | gateway calls | failed |',
    );
    console.log('|---|---|---|---|---|---|---|---|');
    for (const target of targets) {
      const r = await killDuringWrites(cluster, target, `127.0.0.1:${gateway.port}`);
      console.log(
        `| ${target.name} | ${target.stream} | n${r.killed} | ${Math.round(r.stall)} | ${r.acked} | ${r.lost} | ${r.made} | ${r.failed} |`,
      );
    }
    await gateway.stop();
    await gatewayBus.close();
    await writer.close();
  } finally {
    await deadLetters?.close();
    for (const echo of echoes) await echo.stop();
    await cluster.close();
  }
}

await main();
