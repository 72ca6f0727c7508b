/**
 * A subscriber group (`subscribe({ group })`) of three processes on a 3-node cluster:
 * each event goes to one replica; a replica killed with -9 mid-stream loses nothing,
 * since what it held goes to the others; and the effect keyed on the event's sequence
 * in shared state is made exactly once across replicas, redeliveries included.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Bus } from '../../bus/index.js';
import { startBusCluster } from '../support/bus-cluster.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

const REPLICA = fileURLToPath(new URL('../support/children/group-subscriber.ts', import.meta.url));
const EVENTS = 3000;
const HOST = 'group-host';

interface Line {
  readonly pid: number;
  readonly ready?: boolean;
  readonly seq?: number;
  readonly attempt?: number;
  readonly applied?: boolean;
}

describe('a subscriber group of three processes', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  const effects = mkdtempSync(join(tmpdir(), 'halyard-group-'));
  const lines: Line[] = [];
  const replicas: ChildProcess[] = [];

  const spawnReplica = () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', REPLICA, cluster.servers.join(','), 'counter', HOST, effects],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let buffered = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      const parts = (buffered + chunk.toString()).split('\n');
      buffered = parts.pop() ?? '';
      for (const part of parts) lines.push(JSON.parse(part) as Line);
    });
    replicas.push(child);
    return child;
  };
  const deliveries = (pid?: number) =>
    lines.filter((l) => l.seq !== undefined && (pid === undefined || l.pid === pid));

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-group'));
    for (let i = 0; i < 3; i++) spawnReplica();
    await until(
      'three replicas subscribed',
      () => lines.filter((l) => l.ready).length === 3,
      30_000,
    );
  });
  after(async () => {
    for (const child of replicas) if (child.exitCode === null) child.kill('SIGKILL');
    await bus?.close();
    await cluster?.close();
    rmSync(effects, { recursive: true, force: true });
  });

  test('kill -9 of one replica mid-stream: every event handled, each effect made once', async (t) => {
    const publisher = bus.publisher();
    const seqs: number[] = [];
    const publish = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const { seq } = await publisher.publish({
          source: 'lifecycle',
          event: samples.lifecycleEvent({ eventId: `${HOST}/e/${i}`, hostId: HOST }),
        });
        seqs.push(seq);
      }
    };
    const victim = replicas[0]!;
    const [, ...survivors] = replicas;

    await publish(0, EVENTS / 3);
    await until('the victim is handling events', () => deliveries(victim.pid).length > 0, 15_000);
    const exited = new Promise((resolve) => victim.once('exit', resolve));
    victim.kill('SIGKILL');
    await exited;
    const handledByVictim = new Set(deliveries(victim.pid).map((l) => l.seq));
    await publish(EVENTS / 3, EVENTS);

    await until('every effect made', () => readdirSync(effects).length === EVENTS, 60_000, 100);
    // Nothing is left to deliver: the group's consumer has every event acknowledged.
    await until(
      'every delivery acknowledged',
      () => {
        const applied = deliveries().filter((l) => l.applied).length;
        return applied === EVENTS && deliveries().length >= EVENTS;
      },
      15_000,
    );

    const applied = deliveries().filter((l) => l.applied);
    assert.equal(applied.length, EVENTS, 'one effect per event');
    assert.deepEqual(
      [...new Set(applied.map((l) => l.seq))].sort((a, b) => a! - b!),
      [...seqs].sort((a, b) => a - b),
      'every event applied',
    );
    const firstDeliveries = deliveries().filter((l) => l.attempt === 1);
    assert.equal(
      new Set(firstDeliveries.map((l) => l.seq)).size,
      firstDeliveries.length,
      'each event first delivered to one replica only',
    );
    for (const replica of survivors) {
      assert.ok(
        deliveries(replica.pid).some((l) => !handledByVictim.has(l.seq) && l.applied),
        'the work is shared',
      );
    }
    const redelivered = deliveries().filter((l) => l.attempt! > 1);
    t.diagnostic(
      `deliveries per replica: ${replicas.map((r) => deliveries(r.pid).length).join(', ')}; ` +
        `redelivered ${redelivered.length}, of which already applied ${redelivered.filter((l) => !l.applied).length}`,
    );

    for (const replica of survivors) {
      const stopped = new Promise<number | null>((resolve) => replica.once('exit', resolve));
      replica.kill('SIGTERM');
      assert.equal(await stopped, 0);
    }
  });
});
