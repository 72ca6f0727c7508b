import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Bus, ServiceInstance } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { type CacheClient, createCacheClient } from '../../services/cache/client.js';
import { CACHE_SERVICE_ID } from '../../services/cache/registration.js';
import { CACHE_SERVICE } from '../../services/cache/server.js';
import type { DiscoveryReplica } from '../../services/discovery/replica.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { type Replica, startReplica as startCache, tokensFor } from '../support/cache.js';
import { startReplica as startDiscovery, tokenFile } from '../support/discovery.js';
import { ECHO_SERVICE } from '../support/echo-service.js';
import { register, routed, startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const { InstanceStatus } = halyard.discovery.v1;

describe('cache replicas in discovery', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let discovery: DiscoveryReplica;
  let cache: Replica | undefined;
  const gateways: Gateway[] = [];
  const clients: CacheClient[] = [];
  const logs = captureLogs('warn');

  const registered = async (): Promise<ServiceInstance | undefined> => {
    const { entries } = await bus.snapshot('registrations');
    return [...entries.values()].find(
      (i) => i.serviceId === CACHE_SERVICE_ID && i.instanceId === 'cache-1',
    );
  };
  const clientOf = (address: string) => {
    const client = createCacheClient({ address, token: 'token-sessions', timeoutMs: 5000 });
    clients.push(client);
    return client;
  };

  before(async () => {
    ({ cluster, bus } = await startBusCluster('cache-discovery-test', logs.logger));
    discovery = await startDiscovery(cluster, 'discovery-1');
    cache = await startCache(
      cluster.servers,
      'cache-1',
      {
        tokens: tokensFor(['sessions']),
        discovery: {
          addresses: [discovery.grpcAddress],
          tokenFile: tokenFile(),
          leaseSeconds: 5,
          drainGraceMs: 100,
        },
      },
      logs.logger,
    );
  });
  after(async () => {
    for (const client of clients) client.close();
    for (const gateway of gateways) await gateway.stop();
    await cache?.close();
    await discovery?.stop();
    await bus?.close();
    await cluster?.close();
  });

  test('a serving replica registers as halyard-cache, health-checked by discovery', async () => {
    const instance = await until('the replica is registered', registered);
    assert.equal(instance.status, InstanceStatus.UP);
    assert.equal(instance.address, cache!.address);
    assert.deepEqual(instance.grpcServices, [CACHE_SERVICE]);
    assert.deepEqual(instance.metadata, { 'health.grpc': CACHE_SERVICE });
    // The registered address is the replica's: a client that found it there is served.
    const client = clientOf(instance.address);
    await client.put('found', new TextEncoder().encode('through the registry'));
    assert.equal(
      new TextDecoder().decode((await client.get('found'))!.value),
      'through the registry',
    );
  });

  test('gateways do not route it, unless their config names halyard.cache.', async () => {
    const plain = await startGateway(bus, cluster.servers, logs.logger, { id: 'gw-plain' });
    const exposing = await startGateway(bus, cluster.servers, logs.logger, {
      id: 'gw-exposing',
      routing: { exposeInternal: ['halyard.testing.', 'halyard.cache.'] },
    });
    gateways.push(plain, exposing);
    // A service registered after the cache: once routed, the plain gateway saw the cache too.
    await register(bus, { instanceId: 'echo-after', address: '127.0.0.1:1' });
    await routed(plain, ECHO_SERVICE, 'echo-after');
    assert.equal(plain.table.route(CACHE_SERVICE), undefined, 'the plain gateway has no route');
    await assert.rejects(clientOf(`127.0.0.1:${plain.port}`).get('found'), (error: Error) => {
      assert.equal((error as Error & { code?: number }).code, grpc.status.PERMISSION_DENIED);
      assert.match(error.message, /Halyard control-plane service: gateways do not route it/);
      return true;
    });
    // The registration itself is routable: a gateway told to expose it reaches the replica.
    await until('the exposing gateway routes the cache', () =>
      exposing.table.route(CACHE_SERVICE)?.endpoints.some((e) => e.available),
    );
    const through = clientOf(`127.0.0.1:${exposing.port}`);
    assert.equal(
      new TextDecoder().decode((await through.get('found'))!.value),
      'through the registry',
    );
  });

  test('a stopping replica drains and deregisters', async () => {
    await cache!.close();
    cache = undefined;
    await until('the replica left the registry', async () => (await registered()) === undefined);
    assert.deepEqual(
      logs.withId('HALC0060W'),
      [],
      'registration and deregistration went through without a retry',
    );
  });
});
