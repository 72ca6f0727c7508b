import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Bus, EVENTS_STREAM } from '../../bus/index.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

/**
 * A subscriber must notice within seconds that the server it pulled from is gone: the
 * client's defaults (30 s pulls, 15 s heartbeats, two missed) left it silent for up to
 * a minute after its node was killed and restarted.
 */
const NOTICED_WITHIN_MS = 12_000;

describe('subscriptions across a kill -9 and restart of the stream leader', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  const logs = captureLogs('warn');

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-sub-restart', logs.logger));
  });
  after(async () => {
    await bus?.close();
    await cluster?.close();
  });

  for (const durable of [undefined, 'restart-durable']) {
    test(`a ${durable ? 'durable' : 'tailing'} subscription delivers again soon after the leader's node is back`, async (t) => {
      const filter = durable ? 'durable-host.>' : 'tail-host.>';
      const host = durable ? 'durable-host' : 'tail-host';
      const seen = new Set<string>();
      // Connected to the stream leader's node, where the consumer lives too.
      const leader = await cluster.streamLeader(EVENTS_STREAM);
      const onLeader = await Bus.connect({
        servers: [cluster.servers[leader]!],
        name: 'test-sub-on-leader',
        logger: logs.logger,
      });
      const sub = await onLeader.subscribe(
        { kind: 'lifecycle', filter, from: 'new', ...(durable ? { durable } : {}) },
        ({ event }) => {
          seen.add(event.eventId);
        },
      );
      try {
        const publisher = bus.publisher();
        const publish = (id: string) =>
          publisher.publish({
            source: 'lifecycle',
            event: samples.lifecycleEvent({ eventId: id, hostId: host }),
          });
        await publish(`${host}-before`);
        await until('delivered before the kill', () => seen.has(`${host}-before`));

        await cluster.killNode(leader);
        await cluster.startNode(leader);
        const back = Date.now();
        // Published after the node is back, from a connection elsewhere.
        let n = 0;
        await until(
          'delivered again',
          async () => {
            await publish(`${host}-after-${n++}`).catch(() => undefined);
            return [...seen].some((id) => id.startsWith(`${host}-after-`));
          },
          NOTICED_WITHIN_MS + 30_000,
          500,
        );
        const took = Date.now() - back;
        t.diagnostic(`delivered again ${took} ms after node ${leader} was back`);
        assert.ok(took <= NOTICED_WITHIN_MS, `delivered again ${took} ms after the node was back`);
      } finally {
        await sub.stop();
        await onLeader.close();
      }
    });
  }
});
