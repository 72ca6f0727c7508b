import assert from 'node:assert/strict';
import { after, before, describe, type TestContext, test } from 'node:test';
import { Bus, EVENTS_STREAM, kvStream, RegistryBucket } from '../../bus/index.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

/** Writes stop for 5–9 s when a stream leader is killed (RAFT election timeout); allow plenty. */
const OUTAGE_BUDGET_MS = 45_000;
const WRITES_BEFORE_KILL = 40;
const WRITES_AFTER_KILL = 40;

interface Ack {
  readonly id: string;
  readonly at: number;
}

/** Longest time between two consecutive acknowledged writes. */
function longestGap(acks: readonly Ack[]): number {
  let gap = 0;
  for (let i = 1; i < acks.length; i++) gap = Math.max(gap, acks[i]!.at - acks[i - 1]!.at);
  return gap;
}

/**
 * Runs `write` for ids w-0, w-1, … and kills the leader of `stream` after
 * WRITES_BEFORE_KILL acknowledged writes. Stops after WRITES_AFTER_KILL more, or at
 * the time budget. Returns every acknowledged write.
 */
async function writeThroughLeaderKill(
  cluster: NatsCluster,
  stream: string,
  write: (id: string) => Promise<unknown>,
): Promise<{ acks: Ack[]; killedAt: number; killed: number }> {
  const acks: Ack[] = [];
  let killedAt = 0;
  let killed = -1;
  const deadline = Date.now() + OUTAGE_BUDGET_MS;
  for (
    let i = 0;
    acks.length < WRITES_BEFORE_KILL + WRITES_AFTER_KILL && Date.now() < deadline;
    i++
  ) {
    if (acks.length === WRITES_BEFORE_KILL && killed < 0) {
      killed = await cluster.streamLeader(stream);
      killedAt = Date.now();
      await cluster.killNode(killed);
    }
    const id = `w-${i}`;
    await write(id);
    acks.push({ id, at: Date.now() });
  }
  return { acks, killedAt, killed };
}

describe('kill -9 of a stream leader during a stream of writes', () => {
  let cluster: NatsCluster;
  let writer: Bus;
  let reader: Bus;
  const logs = captureLogs('warn');

  before(async () => {
    ({ cluster, bus: writer } = await startBusCluster('test-writer', logs.logger));
  });
  after(async () => {
    await writer?.close();
    await reader?.close();
    await cluster?.close();
  });

  test('registry puts: every acknowledged write survives and writes resume', async (t) => {
    const store = await writer.store(RegistryBucket);
    const { acks, killedAt, killed } = await writeThroughLeaderKill(
      cluster,
      kvStream(RegistryBucket.name),
      // Leases outlive the test however slow the election: expiry is not what is tested.
      (id) => store.put(samples.instance({ instanceId: id, leaseSeconds: 3600 })),
    );
    try {
      await checkRegistry(t, acks, killedAt, killed);
    } finally {
      // Always: with a second node down the next test could not write at all.
      await cluster.startNode(killed);
    }
  });

  async function checkRegistry(t: TestContext, acks: Ack[], killedAt: number, killed: number) {
    const resumed = acks.filter((a) => a.at > killedAt);
    t.diagnostic(
      `leader n${killed} killed; longest time without an acknowledged write: ${longestGap(acks)} ms; ${resumed.length} writes after`,
    );
    assert.equal(resumed.length, WRITES_AFTER_KILL, 'writes resumed without restarting the writer');

    const survivor = cluster.servers.filter((_, i) => i !== killed);
    reader = await Bus.connect({ servers: survivor, name: 'test-reader', logger: logs.logger });
    const view = (await reader.store(RegistryBucket)).view();
    await view.ready;
    const missing = acks.filter((a) => view.get(`orders.${a.id}`) === undefined).map((a) => a.id);
    view.stop();
    assert.deepEqual(missing, [], 'acknowledged writes missing after the failover');
  }

  test('event publishes: every acknowledged event is stored exactly once', async (t) => {
    const publisher = writer.publisher();
    const run = `run-${Date.now()}`;
    const { acks, killedAt, killed } = await writeThroughLeaderKill(cluster, EVENTS_STREAM, (id) =>
      publisher.publish({
        source: 'lifecycle',
        event: samples.lifecycleEvent({ eventId: `${run}/${id}` }),
      }),
    );
    try {
      await checkEvents(t, run, acks, killedAt, killed);
    } finally {
      await cluster.startNode(killed);
    }
  });

  async function checkEvents(
    t: TestContext,
    run: string,
    acks: Ack[],
    killedAt: number,
    killed: number,
  ) {
    t.diagnostic(
      `leader n${killed} killed; longest time without an acknowledged event: ${longestGap(acks)} ms`,
    );
    assert.equal(acks.filter((a) => a.at > killedAt).length, WRITES_AFTER_KILL);

    const stored: string[] = [];
    const sub = await writer.subscribe({ kind: 'lifecycle', from: 'all' }, (e) => {
      if (e.event.eventId.startsWith(run)) stored.push(e.event.eventId.slice(run.length + 1));
    });
    await until('every acknowledged event replayed', () => stored.length >= acks.length);
    await sub.stop();
    assert.deepEqual(
      stored,
      acks.map((a) => a.id),
      'in order, none lost, none duplicated',
    );
  }
});
