import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { AllBuckets, Bus, kvStream, LogIds, RegistryBucket } from '../../bus/index.js';
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
    // Values written then carry no TTL: one live for long, one about to lapse, one lapsed.
    const old = samples.instance({ instanceId: 'from-before', leaseSeconds: 3600 });
    const lapsing = samples.instance({ instanceId: 'lapsing', leaseSeconds: 3 });
    const lapsed = samples.instance({
      instanceId: 'lapsed',
      leaseSeconds: 15,
      renewedAtMs: Date.now() - 60_000,
    });
    const legacy = await kvm.open(RegistryBucket.name);
    for (const value of [old, lapsing, lapsed]) {
      await legacy.put(RegistryBucket.key(value), RegistryBucket.codec.encode(value));
    }

    bus = await Bus.connect({
      servers: cluster.servers,
      name: 'test-upgrade',
      logger: logs.logger,
    });
    await bus.provision();
    assert.equal(logs.withId(LogIds.bucketUpgraded).length, AllBuckets.length);
    const jsm = await jetstreamManager(raw);
    for (const spec of AllBuckets) {
      const { config } = await jsm.streams.info(kvStream(spec.name));
      assert.equal(config.allow_msg_ttl, true, `${spec.name} takes per-message TTLs`);
      assert.equal(config.num_replicas, 3, `${spec.name} keeps its 3 replicas`);
    }

    const store = await bus.store(RegistryBucket);
    assert.deepEqual((await store.get(RegistryBucket.key(old)))?.value, old, 'stored value kept');
    assert.equal(await store.get(RegistryBucket.key(lapsed)), undefined, 'lapsed value removed');
    const [given] = logs
      .withId(LogIds.lifetimesGiven)
      .filter((line) => line.bucket === RegistryBucket.name);
    assert.deepEqual([given?.rewritten, given?.removed], [2, 1]);
    // Written again with its TTL, the value about to lapse is removed by the server.
    await until(
      'the server removes a value written before the upgrade when it lapses',
      async () => !(await store.get(RegistryBucket.key(lapsing))),
      lapsing.renewedAtMs + 3000 + 2000 - Date.now(),
    );
    const short = samples.instance({ instanceId: 'short', leaseSeconds: 1 });
    await store.put(short);
    await until(
      'the server expires a value written after the upgrade',
      async () => !(await store.get(RegistryBucket.key(short))),
      3000,
    );

    // A second start finds nothing to upgrade.
    const lifetimesGiven = logs.withId(LogIds.lifetimesGiven).length;
    await bus.provision();
    assert.equal(logs.withId(LogIds.bucketUpgraded).length, AllBuckets.length);
    assert.equal(logs.withId(LogIds.lifetimesGiven).length, lifetimesGiven);
  } finally {
    await bus?.close();
    await raw.close();
    await cluster.close();
  }
});
