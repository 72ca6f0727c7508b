import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Bus, kvStream, LogIds, RegistryBucket } from '../../bus/index.js';
import { captureLogs } from '../support/logs.js';
import { NatsCluster } from '../support/nats-cluster.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

/**
 * A view's watch is an R1 ordered consumer; when the server holding it dies, the client
 * library would only notice after two 30 s heartbeats. The view must follow the stream
 * again within seconds of the new leader taking writes.
 */
test('a local view keeps following the bucket after kill -9 of the stream leader', async (t) => {
  const cluster = await NatsCluster.start();
  const logs = captureLogs('info');
  const writer = await Bus.connect({
    servers: cluster.servers,
    name: 'test-writer',
    logger: logs.logger,
  });
  let reader: Bus | undefined;
  try {
    await writer.provision();
    // Connected to the stream leader, whose loss is the case that stalls a watch.
    const leader = await cluster.streamLeader(kvStream(RegistryBucket.name));
    reader = await Bus.connect({
      servers: cluster.servers[leader]!,
      name: 'test-reader',
      logger: logs.logger,
    });
    const store = await writer.store(RegistryBucket);
    const view = (await reader.store(RegistryBucket)).view();
    await view.ready;
    await store.put(samples.instance({ instanceId: 'before', leaseSeconds: 300 }));
    await until('seen before the kill', () => view.get('orders.before'));

    await cluster.killNode(leader);
    await store.put(samples.instance({ instanceId: 'after', leaseSeconds: 300 }));
    const writtenAt = Date.now();
    await until(
      'the view has the write made after the kill',
      () => view.get('orders.after'),
      20_000,
    );
    const lag = Date.now() - writtenAt;
    t.diagnostic(
      `seen ${lag} ms after the write was acknowledged; watch resumed ${logs.withId(LogIds.viewResumed).length} time(s)`,
    );
    assert.ok(lag < 20_000);
    view.stop();
  } finally {
    await reader?.close();
    await writer.close();
    await cluster.close();
  }
});
