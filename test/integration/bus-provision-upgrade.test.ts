import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { AllBuckets, Bus, LogIds, RegistryBucket } from '../../bus/index.js';
import { captureLogs } from '../support/logs.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { rawConnection } from '../support/raw-nats.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

/**
 * Buckets made before values carried per-message TTLs lack `allow_msg_ttl`: provisioning
 * turns it on in place, keeps every stored value, and lapsing values then expire on the
 * server. On a 3-node cluster with R3 buckets, as deployed: each bucket is its own RAFT
 * group whose every replica takes the new configuration.
 */
test('buckets provisioned without per-message TTLs are upgraded in place, values kept', async () => {
  const cluster = await NatsCluster.start({ nodes: 3, provision: false });
  const logs = captureLogs('info');
  const raw = await rawConnection(cluster.servers);
  let bus: Bus | undefined;
  try {
    // As an older Halyard provisioned them.
    const kvm = new Kvm(jetstream(raw));
    for (const spec of AllBuckets) {
      await kvm.create(spec.name, {
        history: spec.history,
        replicas: 3,
        storage: StorageType.File,
        allow_direct: spec.allowDirect,
      });
    }
    const old = samples.instance({ instanceId: 'from-before', leaseSeconds: 3600 });
    await (await kvm.open(RegistryBucket.name)).put(
      RegistryBucket.key(old),
      RegistryBucket.codec.encode(old),
    );

    bus = await Bus.connect({
      servers: cluster.servers,
      name: 'test-upgrade',
      logger: logs.logger,
    });
    await bus.provision();
    assert.equal(logs.withId(LogIds.bucketUpgraded).length, AllBuckets.length);
    const jsm = await jetstreamManager(raw);
    for (const spec of AllBuckets) {
      const { config } = await jsm.streams.info(`KV_${spec.name}`);
      assert.equal(config.allow_msg_ttl, true, `${spec.name} takes per-message TTLs`);
      assert.equal(config.num_replicas, 3, `${spec.name} keeps its 3 replicas`);
    }

    const store = await bus.store(RegistryBucket);
    assert.deepEqual((await store.get(RegistryBucket.key(old)))?.value, old, 'stored value kept');
    const short = samples.instance({ instanceId: 'short', leaseSeconds: 1 });
    await store.put(short);
    await until(
      'the server expires a value written after the upgrade',
      async () => !(await store.get(RegistryBucket.key(short))),
      3000,
    );

    // A second start finds nothing to upgrade.
    await bus.provision();
    assert.equal(logs.withId(LogIds.bucketUpgraded).length, AllBuckets.length);
  } finally {
    await bus?.close();
    await raw.close();
    await cluster.close();
  }
});
