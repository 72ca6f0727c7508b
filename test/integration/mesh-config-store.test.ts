/**
 * The mesh configuration's versions on a real 3-node cluster: compare-and-set between
 * writers on different nodes, a history without gaps, and a watch that starts at the
 * latest version and follows every newer one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Bus, ConfigConflictError, type MeshConfigVersion } from '../../bus/index.js';
import { connectEach } from '../support/bus-cluster.js';
import { captureLogs } from '../support/logs.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const mesh = (n: number) => `components:\n  greeter:\n    command: node\n    version: "${n}"\n`;

describe('mesh configuration versions on a 3-node cluster', () => {
  let cluster: NatsCluster;
  let buses: Bus[];
  const logs = captureLogs('warn');

  before(async () => {
    cluster = await NatsCluster.start();
    buses = await connectEach(cluster, 'config', logs.logger);
  });
  after(async () => {
    await Promise.all((buses ?? []).map((bus) => bus.close()));
    await cluster?.close();
  });

  test('an empty bucket has no latest version and an empty history', async () => {
    const store = buses[0]!.meshConfig();
    assert.equal(await store.latest(), undefined);
    assert.deepEqual(await store.history(), []);
    assert.equal(await store.get(1), undefined);
  });

  test('writers on every node publishing on the same version: exactly one wins, each round', async () => {
    const stores = buses.map((bus) => bus.meshConfig());
    for (let round = 0; round < 5; round++) {
      const basedOn = (await stores[0]!.latest())?.version ?? 0;
      const results = await Promise.allSettled(
        stores.map((store, i) =>
          store.publish({
            basedOn,
            content: mesh(round * 10 + i),
            author: `writer-${i}`,
            summary: `round ${round} by writer ${i}`,
          }),
        ),
      );
      const won = results.filter((r) => r.status === 'fulfilled').map((r) => r.value);
      const lost = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
      assert.equal(won.length, 1, `round ${round}: one winner`);
      const winner = won[0]!;
      assert.equal(winner.version, basedOn + 1);
      assert.equal(lost.length, stores.length - 1);
      for (const error of lost) {
        assert.ok(error instanceof ConfigConflictError, String(error));
        assert.equal(error.current.version, winner.version);
        assert.equal(error.current.author, winner.author);
        assert.match(
          error.message,
          new RegExp(
            `version ${winner.version} by ${winner.author} .* replaced version ${basedOn}`,
          ),
        );
      }
      // Every node reads the winner as the latest.
      for (const store of stores) assert.deepEqual(await store.latest(), winner);
    }
    const history = await stores[1]!.history();
    assert.deepEqual(
      history.map((v) => [v.version, v.basedOn]),
      [1, 2, 3, 4, 5].map((v) => [v, v - 1]),
    );
  });

  test('a publish based on an old version names the latest; one based on a future version is refused', async () => {
    const store = buses[2]!.meshConfig();
    const latest = (await store.latest())!;
    await assert.rejects(
      store.publish({ basedOn: 1, content: mesh(99), author: 'late', summary: '' }),
      (error: unknown) =>
        error instanceof ConfigConflictError && error.current.version === latest.version,
    );
    await assert.rejects(
      store.publish({ basedOn: latest.version + 5, content: mesh(99), author: 'x', summary: '' }),
      /version \d+ does not exist/,
    );
    assert.equal((await store.latest())?.version, latest.version);
  });

  test('a watch delivers the latest version first, then every newer one in order', async () => {
    const [writer, reader] = [buses[0]!.meshConfig(), buses[1]!.meshConfig()];
    const start = (await writer.latest())!;
    const seen: MeshConfigVersion[] = [];
    const watch = await reader.watch((v) => seen.push(v));
    try {
      assert.deepEqual(seen, [start]);
      let basedOn = start.version;
      for (let i = 0; i < 3; i++) {
        basedOn = (
          await writer.publish({ basedOn, content: mesh(100 + i), author: 'w', summary: `s${i}` })
        ).version;
      }
      await until('the watch to see three new versions', () => seen.length === 4);
      assert.deepEqual(
        seen.map((v) => v.version),
        [start.version, start.version + 1, start.version + 2, start.version + 3],
      );
      assert.equal(seen.at(-1)?.content, mesh(102));
    } finally {
      await watch.stop();
    }
  });

  test('a watch whose bus node stops follows the versions published meanwhile from the others', async () => {
    const [writer, reader] = [buses[0]!.meshConfig(), buses[1]!.meshConfig()];
    const seen: number[] = [];
    const watch = await reader.watch((v) => seen.push(v.version));
    try {
      const start = seen[0]!;
      await cluster.stopNode(1);
      const published = await writer.publish({
        basedOn: start,
        content: mesh(200),
        author: 'w',
        summary: 'while n1 was down',
      });
      await until(
        'the watch to see the version published while its node was down',
        () => seen.includes(published.version),
        30_000,
      );
      assert.deepEqual(seen, [start, published.version]);
    } finally {
      await watch.stop();
      await cluster.startNode(1);
    }
  });
});
