/**
 * Leader leases (bus/lease.ts) held by real processes on a 3-node cluster: a kill -9 of
 * the holder hands the lease to another candidate within ttl + 1 s; a release hands it
 * over at once; and through a kill of the bucket's stream leader no fencing token is
 * ever held by two processes, nor do two holders ever act at the same time.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Buckets, type Bus, kvStream } from '../../bus/index.js';
import { startBusCluster } from '../support/bus-cluster.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const HOLDER = fileURLToPath(new URL('../support/children/lease-holder.ts', import.meta.url));
const TTL_MS = 2000;
const NAME = 'reconciler';

interface Line {
  event: 'candidate' | 'acquired' | 'act' | 'lost';
  token?: number;
  pid: number;
  at: number;
}

describe('leader leases held by processes on a 3-node cluster', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  const lines: Line[] = [];
  const children = new Map<number, ChildProcess>();

  const spawnHolder = () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', HOLDER, cluster.servers.join(','), NAME, String(TTL_MS)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let buffered = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      const parts = (buffered + chunk.toString()).split('\n');
      buffered = parts.pop() ?? '';
      for (const part of parts) lines.push(JSON.parse(part) as Line);
    });
    children.set(child.pid!, child);
    return child;
  };
  const acquisitions = () => lines.filter((l) => l.event === 'acquired');
  const lastAcquisition = () => acquisitions().at(-1);
  const stop = (pid: number, signal: NodeJS.Signals) => {
    const child = children.get(pid)!;
    children.delete(pid);
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill(signal);
    return exited;
  };

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-lease'));
    for (let i = 0; i < 3; i++) spawnHolder();
    await until(
      'three candidates, one holder',
      () => lines.filter((l) => l.event === 'candidate').length === 3 && lastAcquisition(),
      30_000,
    );
  });
  after(async () => {
    for (const child of children.values()) child.kill('SIGKILL');
    await bus?.close();
    await cluster?.close();
  });

  test('kill -9 of the holder: another process holds it within ttl + 1 s, with a greater token', async () => {
    const first = lastAcquisition()!;
    await stop(first.pid, 'SIGKILL');
    const killedAt = Date.now();
    const next = await until('a new holder', () => {
      const last = lastAcquisition()!;
      return last.pid !== first.pid ? last : undefined;
    });
    assert.ok(next.token! > first.token!, `token ${next.token} after ${first.token}`);
    assert.ok(next.at - killedAt <= TTL_MS + 1000, `taken over after ${next.at - killedAt} ms`);
    spawnHolder();
  });

  test('a released lease is taken over without waiting for ttl', async () => {
    const holder = lastAcquisition()!;
    const releasedAt = Date.now();
    assert.equal(await stop(holder.pid, 'SIGTERM'), 0);
    const next = await until('a new holder', () => {
      const last = lastAcquisition()!;
      return last.pid !== holder.pid ? last : undefined;
    });
    assert.ok(next.at - releasedAt < TTL_MS, `taken over after ${next.at - releasedAt} ms`);
    spawnHolder();
  });

  test('through a stream leader change: no token held twice, no two holders acting at once', async () => {
    const stream = kvStream(Buckets.leases);
    const leader = await cluster.streamLeader(stream);
    await cluster.killNode(leader);
    const killedAt = Date.now();
    // Renewals go on through the election, or the lease lapses and another takes it.
    await until(
      'a holder acting after the election',
      () => lines.some((l) => l.event === 'act' && l.at > killedAt + 2 * TTL_MS),
      30_000,
    );
    await cluster.startNode(leader);
    await cluster.waitReady();
    const settled = Date.now();
    await until(
      'a holder acting after the restart',
      () => lines.some((l) => l.event === 'act' && l.at > settled + TTL_MS),
      30_000,
    );

    // Each holding's acting period: a token, the process that acted with it, when.
    const periods = new Map<string, { token: number; pid: number; from: number; to: number }>();
    for (const l of lines.filter((x) => x.event === 'act')) {
      const key = `${l.token}/${l.pid}`;
      const period = periods.get(key);
      if (period) period.to = l.at;
      else periods.set(key, { token: l.token!, pid: l.pid, from: l.at, to: l.at });
    }
    const history = JSON.stringify({
      events: lines.filter((l) => l.event !== 'act'),
      periods: [...periods.values()],
    });
    const pidsOf = new Map<number, Set<number>>();
    for (const l of lines.filter((x) => x.event === 'acquired' || x.event === 'act')) {
      pidsOf.set(l.token!, (pidsOf.get(l.token!) ?? new Set()).add(l.pid));
    }
    for (const [token, pids] of pidsOf) {
      assert.equal(pids.size, 1, `token ${token} held by ${[...pids]}: ${history}`);
    }
    // Ordered by start, each period ends before the next begins, whose token is greater.
    const ordered = [...periods.values()].sort((a, b) => a.from - b.from);
    for (let i = 1; i < ordered.length; i++) {
      const [prev, next] = [ordered[i - 1]!, ordered[i]!];
      assert.ok(prev.to < next.from && prev.token < next.token, `overlap: ${history}`);
    }
  });
});
