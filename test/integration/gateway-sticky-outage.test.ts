import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { SignJWT } from 'jose';
import { AffinityBucket, type Bus, Keys } from '../../bus/index.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { startBusCluster } from '../support/bus-cluster.js';
import {
  ECHO_SERVICE,
  type EchoClient,
  type EchoServer,
  echoClient,
  startEchoServer,
} from '../support/echo-service.js';
import { register, routed, startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const JWT_SECRET = 'an-outage-test-signing-secret-0123456789';
const MESH_SECRET = 'outage-test-mesh-secret';
const userKeyOf = (user: string) =>
  createHmac('sha256', MESH_SECRET)
    .update(JSON.stringify(['', user]))
    .digest('base64url');

function asUser(client: EchoClient, jwt: string): Promise<{ code: number; instance?: string }> {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${jwt}`);
  return new Promise((resolve) => {
    client.unary({ payload: Buffer.from('x') }, metadata, { deadline: Date.now() + 5000 }, (e, r) =>
      resolve(e ? { code: e.code } : { code: 0, instance: r.instanceId }),
    );
  });
}

describe('sticky routing while the bus is away', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let gateway: Gateway;
  let client: EchoClient;
  const servers: EchoServer[] = [];
  const logs = captureLogs('info');
  const sign = (sub: string) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(sub)
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(JWT_SECRET));

  before(async () => {
    ({ cluster, bus } = await startBusCluster('outage-test', logs.logger));
    for (let i = 1; i <= 3; i++) servers.push(await startEchoServer({ instanceId: `echo-${i}` }));
    for (const server of servers) {
      await register(bus, {
        instanceId: server.instanceId,
        address: server.address,
        metadata: { 'lb.policy': 'user' },
      });
    }
    gateway = await startGateway(bus, cluster.servers, logs.logger, {
      id: 'gw-outage',
      affinity: { meshSecret: MESH_SECRET, jwt: { hs256Secret: JWT_SECRET } },
    });
    for (const server of servers) await routed(gateway, ECHO_SERVICE, server.instanceId);
    client = echoClient(`127.0.0.1:${gateway.port}`);
  });
  after(async () => {
    client?.close();
    await gateway?.stop();
    for (const server of servers) await server.stop();
    await bus?.close();
    await cluster?.close();
  });

  test('known users keep their instance, new decisions are used at once and written when the bus returns', async (t) => {
    const known = await sign('known-user');
    const first = await asUser(client, known);
    assert.equal(first.code, 0);
    const store = await bus.store(AffinityBucket);
    const knownKey = Keys.affinity('echo', userKeyOf('known-user'));
    await until('known stored', async () => (await store.get(knownKey)) !== undefined);

    await cluster.stopAll();
    await until('bus connection down', () => !bus.connected);

    assert.deepEqual(await asUser(client, known), first, 'routed from memory');
    const fresh = await sign('new-user');
    const decided = await asUser(client, fresh);
    assert.equal(decided.code, 0);
    assert.equal(gateway.affinity.queued, 1, 'the decision waits for the bus');
    assert.deepEqual(await asUser(client, fresh), decided, 'and is used meanwhile');

    const restarted = Date.now();
    await cluster.startAll();
    const newKey = Keys.affinity('echo', userKeyOf('new-user'));
    const stored = await until(
      'queued decision written',
      async () => (await store.get(newKey))?.value,
      40_000,
      200,
    );
    t.diagnostic(`queued preference written ${Date.now() - restarted} ms after the restart`);
    assert.equal(stored.instanceId, decided.instance);
    assert.equal(gateway.affinity.queued, 0);
    assert.deepEqual(await asUser(client, fresh), decided);
  });
});
