import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CacheBucket, kvStream } from '../../bus/index.js';
import { type CacheClient, createCacheClient } from '../../services/cache/client.js';
import { type Replica, startReplica, tokensFor } from '../support/cache.js';
import { captureLogs } from '../support/logs.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

/** Writes stop for 5–9 s when a stream leader is killed (RAFT election timeout); allow plenty. */
const OUTAGE_BUDGET_MS = 45_000;
const WRITES_BEFORE_KILL = 30;
const WRITES_AFTER_KILL = 30;

describe('cache: kill -9 of the bucket stream leader during writes', () => {
  let cluster: NatsCluster;
  let a: Replica;
  let b: Replica;
  let writer: CacheClient;
  let reader: CacheClient;
  const logs = captureLogs('warn');

  before(async () => {
    cluster = await NatsCluster.start();
    const config = { tokens: tokensFor(['sessions']) };
    a = await startReplica(cluster.servers, 'cache-a', config, logs.logger);
    b = await startReplica([...cluster.servers].reverse(), 'cache-b', config, logs.logger);
    // The service retries writes through the election: the caller's deadline must outlast it.
    writer = createCacheClient({ address: a.address, token: 'token-sessions', timeoutMs: 30_000 });
    reader = createCacheClient({ address: b.address, token: 'token-sessions' });
  });
  after(async () => {
    writer?.close();
    reader?.close();
    await a?.close();
    await b?.close();
    await cluster?.close();
  });

  test('every acknowledged write is readable on the other replica afterwards', async (t) => {
    let leader = -1;
    const acked: Array<{ key: string; at: number }> = [];
    let killedAt = 0;
    let unacknowledged = 0;
    let lastError = '';
    const deadline = Date.now() + OUTAGE_BUDGET_MS;
    for (let i = 0; acked.length < WRITES_BEFORE_KILL + WRITES_AFTER_KILL; i++) {
      assert.ok(
        Date.now() < deadline,
        `writes did not resume within the budget: ${acked.length} acknowledged, ${unacknowledged} failed (last: ${lastError}), leader n${leader} killed ${Date.now() - killedAt} ms ago; view lag warnings ${logs.withId('HALC0042W').length}, watch failures ${logs.withId('HALB0041E').length}`,
      );
      if (acked.length === WRITES_BEFORE_KILL && killedAt === 0) {
        leader = await cluster.streamLeader(kvStream(CacheBucket.name));
        killedAt = Date.now();
        await cluster.killNode(leader);
      }
      const key = `session-${i}`;
      try {
        await writer.put(key, new TextEncoder().encode(`value ${i}`));
        acked.push({ key, at: Date.now() });
      } catch (error) {
        unacknowledged++; // not acknowledged: the caller would retry; nothing is promised
        lastError = (error as Error).message;
      }
    }
    let gap = 0;
    for (let i = 1; i < acked.length; i++) gap = Math.max(gap, acked[i]!.at - acked[i - 1]!.at);
    t.diagnostic(
      `leader n${leader} killed; longest time without an acknowledged write: ${gap} ms; ${unacknowledged} calls failed`,
    );

    await until(
      'every acknowledged write on B',
      async () => {
        for (const { key } of acked) if ((await reader.get(key)) === undefined) return false;
        return true;
      },
      20_000,
      200,
    );
    // The writer's replica catches up too: its own readers see every acknowledged write.
    await until(
      'every acknowledged write on A',
      async () => {
        for (const { key } of acked) if ((await writer.get(key)) === undefined) return false;
        return true;
      },
      20_000,
      200,
    );
    t.diagnostic(
      `view lag warnings: ${logs.withId('HALC0042W').length}; watches resumed: ${logs.withId('HALB0043W').length}; watch failures: ${logs.withId('HALB0041E').length}`,
    );
    const listed = new Set<string>();
    let token = '';
    do {
      const page = await reader.list({ pageSize: 1000, pageToken: token });
      for (const key of page.keys) listed.add(key);
      token = page.nextPageToken;
    } while (token);
    assert.deepEqual(
      acked.filter(({ key }) => !listed.has(key)),
      [],
      'acknowledged writes missing',
    );
    await cluster.startNode(leader);
  });
});
