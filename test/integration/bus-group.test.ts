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
const EVENTS = 10_000;
/** Each replica takes this long per event: events arrive faster than they are handled, so each holds some when one dies. */
const WORK_MS = 2;
/** Concurrent publishers. */
const LANES = 20;
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
      [
        '--import',
        'tsx',
        REPLICA,
        cluster.servers.join(','),
        'counter',
        HOST,
        effects,
        String(WORK_MS),
      ],
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
  });
  after(async () => {
    for (const child of replicas) if (child.exitCode === null) child.kill('SIGKILL');
    await bus?.close();
    await cluster?.close();
    rmSync(effects, { recursive: true, force: true });
  });

  test('kill -9 of one replica mid-stream: every event handled, each effect made once', async (t) => {
    for (let i = 0; i < 3; i++) spawnReplica();
    await until(
      'three replicas subscribed',
      () => lines.filter((l) => l.ready).length === 3,
      30_000,
    );
    const seqs: number[] = [];
    const publishing = Promise.all(
      Array.from({ length: LANES }, async (_, lane) => {
        const publisher = bus.publisher();
        for (let i = lane; i < EVENTS; i += LANES) {
          const { seq } = await publisher.publish({
            source: 'lifecycle',
            event: samples.lifecycleEvent({ eventId: `${HOST}/e/${i}`, hostId: HOST }),
          });
          seqs.push(seq);
        }
      }),
    );
    const [victim, ...survivors] = replicas as [ChildProcess, ...ChildProcess[]];
    await until(
      'the victim is handling events',
      () => deliveries(victim.pid).length >= 300,
      30_000,
    );
    const exited = new Promise((resolve) => victim.once('exit', resolve));
    victim.kill('SIGKILL');
    await exited;
    await publishing;

    await until('every effect made', () => readdirSync(effects).length === EVENTS, 60_000, 100);
    // A replica reports an effect just after making it.
    await until(
      'every effect reported',
      () => deliveries().filter((l) => l.applied).length >= EVENTS,
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
        deliveries(replica.pid).some((l) => l.applied),
        'the work is shared',
      );
    }
    // The victim died with messages fetched and not acknowledged: the others got them.
    const redelivered = deliveries().filter((l) => l.attempt! > 1);
    assert.ok(redelivered.length > 0, 'what the victim held was delivered again');
    assert.ok(redelivered.every((l) => l.pid !== victim.pid));
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
