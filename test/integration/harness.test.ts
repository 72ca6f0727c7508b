import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, test } from 'node:test';
import {
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  StorageType,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { sleep } from '../../services/common/sleep.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { rawConnection } from '../support/raw-nats.js';

const STREAM = 'HARNESS';

let cluster: NatsCluster | undefined;
let nc: NatsConnection | undefined;

after(async () => {
  await nc?.close().catch(() => {});
  await cluster?.close();
});

/** Run `fn` until it succeeds or `timeoutMs` passes; returns how long it took. */
async function retry<T>(
  what: string,
  fn: () => Promise<T>,
  timeoutMs = 30_000,
): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  let lastErr: unknown;
  while (Date.now() - t0 < timeoutMs) {
    try {
      return { value: await fn(), ms: Date.now() - t0 };
    } catch (err) {
      lastErr = err;
      await sleep(100); // between attempts, while the cluster elects or restarts
    }
  }
  throw new Error(`${what} did not succeed within ${timeoutMs} ms: ${String(lastErr)}`);
}

/** msgID makes retries idempotent: an attempt whose ack got lost is deduplicated, not stored twice. */
function publish(js: JetStreamClient, n: number) {
  return retry(`publish #${n}`, () =>
    js.publish(`harness.${n}`, `m${n}`, { msgID: `m${n}`, timeout: 2_000 }),
  );
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = Date.now();
  await fn();
  return Date.now() - t0;
}

test('3-node cluster survives kill -9 of the stream leader and a full restart', async (t) => {
  const t0 = Date.now();
  const c = await NatsCluster.start();
  cluster = c;
  const startMs = Date.now() - t0;
  t.diagnostic(`start: ${startMs} ms (${c.servers.join(' ')})`);
  assert.equal(c.nodes.length, 3);
  assert.ok(c.nodes.every((n) => n.running && typeof n.pid === 'number'));

  nc = await rawConnection(c.servers, { maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const jsm: JetStreamManager = await jetstreamManager(nc);
  const js = jetstream(nc);
  await jsm.streams.add({
    name: STREAM,
    subjects: ['harness.>'],
    num_replicas: 3,
    storage: StorageType.File,
  });

  let sent = 0;
  for (; sent < 5; ) await publish(js, ++sent);

  const leader = await c.streamLeader(STREAM);
  const killMs = await timed(() => c.killNode(leader));
  assert.equal(c.nodes[leader]?.running, false);
  const { ms: failoverMs } = await publish(js, ++sent);
  const newLeader = await c.streamLeader(STREAM);
  assert.notEqual(newLeader, leader);
  t.diagnostic(
    `kill -9 n${leader}: ${killMs} ms; publish ok again after ${failoverMs} ms; new leader n${newLeader}`,
  );

  const restartMs = await timed(() => c.startNode(leader));
  assert.equal(c.nodes[leader]?.running, true);
  t.diagnostic(`restart n${leader}: ${restartMs} ms`);
  for (const end = sent + 5; sent < end; ) await publish(js, ++sent);

  // Graceful stop hands stream leadership over instead of waiting for an election timeout.
  const gracefulLeader = await c.streamLeader(STREAM);
  const stopMs = await timed(() => c.stopNode(gracefulLeader));
  const { ms: handoverMs } = await publish(js, ++sent);
  t.diagnostic(`SIGTERM n${gracefulLeader}: ${stopMs} ms; publish ok again after ${handoverMs} ms`);
  await c.startNode(gracefulLeader);

  const stopAllMs = await timed(() => c.stopAll());
  assert.ok(c.nodes.every((n) => !n.running));
  const startAllMs = await timed(() => c.startAll());
  assert.ok(c.nodes.every((n) => n.running));
  t.diagnostic(`stopAll: ${stopAllMs} ms; startAll: ${startAllMs} ms`);

  await c.streamLeader(STREAM);
  const { value: info, ms: infoMs } = await retry('stream info', () => jsm.streams.info(STREAM));
  t.diagnostic(`stream info available ${infoMs} ms after startAll`);
  assert.equal(info.state.messages, sent);
  assert.equal(info.config.num_replicas, 3);
});

test('close() is idempotent and removes the temp dir', async () => {
  const single = await NatsCluster.start({ nodes: 1 });
  assert.equal(single.servers.length, 1);
  assert.ok(existsSync(single.dir));
  await Promise.all([single.close(), single.close()]);
  await single.close();
  assert.equal(existsSync(single.dir), false);
  assert.equal(single.nodes[0]?.running, false);
});
