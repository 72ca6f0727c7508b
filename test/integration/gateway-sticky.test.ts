import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { SignJWT } from 'jose';
import { AffinityBucket, type Bus, type GatewayEvent, Keys } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { parseInstanceMetadata } from '../../services/common/lb-metadata.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { gatewayMetrics } from '../../services/gateway/metrics.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { ECHO_SERVICE, type EchoClient, echoClient } from '../support/echo-service.js';
import { InstanceStatus, register, startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import { counterValue } from '../support/metrics.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { type EchoProcess, spawnEcho } from '../support/processes.js';
import { until } from '../support/wait.js';

const { Kind } = halyard.gateway.v1.GatewayEvent;
const JWT_SECRET = 'a-test-signing-secret-of-at-least-32-bytes!';
const MESH_SECRET = 'mesh-secret-for-user-keys';
const affinityConfig = {
  meshSecret: MESH_SECRET,
  jwt: { hs256Secret: JWT_SECRET },
};
const secret = new TextEncoder().encode(JWT_SECRET);

function token(
  sub: string,
  { key = secret, expiresIn = '1h' as string | number } = {},
): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(key);
}

interface Reply {
  readonly code: number;
  readonly details: string;
  readonly instance: string | undefined;
}

function call(client: EchoClient, headers: Record<string, string> = {}): Promise<Reply> {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
  return new Promise((resolve) => {
    client.unary(
      { payload: Buffer.from('x') },
      metadata,
      { deadline: Date.now() + 8000 },
      (error, reply) =>
        resolve({
          code: error ? error.code : 0,
          details: error?.details ?? '',
          instance: error ? undefined : reply.instanceId,
        }),
    );
  });
}

const asUser = (client: EchoClient, jwt: string) =>
  call(client, { authorization: `Bearer ${jwt}` });

describe('sticky routing through two gateway replicas', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let a: Gateway;
  let b: Gateway;
  let clientA: EchoClient;
  let clientB: EchoClient;
  const echoes: EchoProcess[] = [];
  const events: GatewayEvent[] = [];
  const logs = captureLogs('debug');
  /**
   * The gateways' clock for sticky preferences. Stopped, the gateways never see a
   * preference lapse by themselves: what removes it then is the server.
   */
  let stoppedAt: number | undefined;
  const clock = { now: () => stoppedAt ?? Date.now() };
  const tokens = new Map<string, string>();
  const jwtOf = async (user: string) => {
    let jwt = tokens.get(user);
    if (!jwt) {
      jwt = await token(user);
      tokens.set(user, jwt);
    }
    return jwt;
  };

  /** Re-registers the three instances with these lb.* settings; waits for both gateways. */
  async function settle(metadata: Record<string, string>, allAvailable = true): Promise<void> {
    for (const echo of echoes) {
      await register(bus, {
        instanceId: echo.instanceId,
        address: `127.0.0.1:${echo.port}`,
        metadata,
      });
    }
    const parsed = parseInstanceMetadata(metadata);
    assert.ok(parsed.ok);
    const expected = JSON.stringify(parsed.settings.lb);
    for (const gateway of [a, b]) {
      await until('settings applied', () => {
        const route = gateway.table.route(ECHO_SERVICE);
        return (
          route !== undefined &&
          JSON.stringify(route.settings) === expected &&
          route.endpoints.length === echoes.length &&
          (!allAvailable || route.endpoints.every((e) => e.available))
        );
      });
    }
  }

  before(async () => {
    ({ cluster, bus } = await startBusCluster('sticky-test', logs.logger));
    await bus.subscribe({ kind: 'gateway', from: 'new' }, ({ event }) => {
      events.push(event);
    });
    for (let i = 1; i <= 3; i++) echoes.push(await spawnEcho({ instanceId: `echo-${i}` }));
    const options = { affinity: affinityConfig };
    a = await startGateway(bus, cluster.servers, logs.logger, { id: 'gw-a', ...options }, clock);
    b = await startGateway(bus, cluster.servers, logs.logger, { id: 'gw-b', ...options }, clock);
    clientA = echoClient(`127.0.0.1:${a.port}`);
    clientB = echoClient(`127.0.0.1:${b.port}`);
    await settle({ 'lb.policy': 'user' });
  });
  after(async () => {
    clientA?.close();
    clientB?.close();
    await a?.stop();
    await b?.stop();
    for (const echo of echoes) await echo.kill();
    await bus?.close();
    await cluster?.close();
  });

  test('200 users calling alternately through A and B each stay on one instance', async () => {
    const landed = new Map<string, Set<string>>();
    const users = Array.from({ length: 200 }, (_, i) => `user-${i}@example.com`);
    for (let batch = 0; batch < users.length; batch += 25) {
      await Promise.all(
        users.slice(batch, batch + 25).map(async (user) => {
          const jwt = await jwtOf(user);
          const seen = new Set<string>();
          for (let i = 0; i < 4; i++) {
            const reply = await asUser(i % 2 === 0 ? clientA : clientB, jwt);
            assert.equal(reply.code, 0, reply.details);
            seen.add(reply.instance!);
          }
          landed.set(user, seen);
        }),
      );
    }
    for (const [user, seen] of landed) assert.equal(seen.size, 1, `${user} landed on ${[...seen]}`);
    const spread = new Set([...landed.values()].map((s) => [...s][0]));
    assert.equal(spread.size, 3, 'users are spread over the three instances');
    // Every gateway holds the same preferences, and the bucket says the same.
    const snapshot = await bus.snapshot('affinity');
    await until(
      'both views hold the 200 preferences',
      () => a.affinity.size >= 200 && b.affinity.size >= 200,
    );
    for (const [user, seen] of landed) {
      const stored = snapshot.entries.get(Keys.affinity('echo', userKeyOf(user)));
      assert.equal(stored?.instanceId, [...seen][0]);
    }
  });

  test('one user created concurrently through A and B converges on one instance, every time', async () => {
    for (let trial = 0; trial < 40; trial++) {
      const jwt = await jwtOf(`race-${trial}`);
      const [ra, rb] = await Promise.all([asUser(clientA, jwt), asUser(clientB, jwt)]);
      assert.equal(ra.code, 0, ra.details);
      assert.equal(ra.instance, rb.instance, `trial ${trial}: A and B decided alike`);
      const key = Keys.affinity('echo', userKeyOf(`race-${trial}`));
      await until('both views agree', () => {
        const va = a.affinity.get('echo', userKeyOf(`race-${trial}`));
        const vb = b.affinity.get('echo', userKeyOf(`race-${trial}`));
        return (
          va !== undefined && va.instanceId === vb?.instanceId && va.instanceId === ra.instance
        );
      });
      assert.ok(key);
    }
  });

  test('header policy: good, unknown, foreign and down instance ids', async () => {
    await register(bus, {
      serviceId: 'other',
      instanceId: 'other-1',
      address: '127.0.0.1:1',
      grpcServices: ['halyard.testing.v1.Other'],
    });
    await settle({ 'lb.policy': 'header' });
    for (const echo of echoes) {
      const reply = await call(clientA, { 'x-halyard-instance': echo.instanceId });
      assert.deepEqual([reply.code, reply.instance], [0, echo.instanceId]);
    }
    const unknown = await call(clientB, { 'x-halyard-instance': 'echo-99' });
    assert.equal(unknown.code, grpc.status.NOT_FOUND);
    assert.match(unknown.details, /"echo-99", which is not an instance of echo/);
    const foreign = await call(clientB, { 'x-halyard-instance': 'other-1' });
    assert.equal(foreign.code, grpc.status.NOT_FOUND);
    assert.match(foreign.details, /"other-1", which is not an instance of echo/);
    const free = await call(clientA);
    assert.equal(free.code, 0, 'no header: round robin');
    // echo-3 DOWN: failover by default, UNAVAILABLE with strict.
    const down = async (metadata: Record<string, string>) => {
      await settle(metadata);
      await register(bus, {
        instanceId: 'echo-3',
        address: `127.0.0.1:${echoes[2]!.port}`,
        metadata,
        status: InstanceStatus.DOWN,
      });
      await until('echo-3 down', () =>
        [a, b].every((g) =>
          g.table.route(ECHO_SERVICE)?.endpoints.some((e) => e.id === 'echo-3' && !e.available),
        ),
      );
      return call(clientA, { 'x-halyard-instance': 'echo-3' });
    };
    const moved = await down({ 'lb.policy': 'header' });
    assert.equal(moved.code, 0);
    assert.notEqual(moved.instance, 'echo-3');
    const strict = await down({ 'lb.policy': 'header', 'lb.whenDown': 'strict' });
    assert.equal(strict.code, grpc.status.UNAVAILABLE);
    assert.match(strict.details, /echo-3 of echo .* is DOWN, and lb\.whenDown=strict/);
  });

  test('forged, expired, unsigned and missing tokens', async () => {
    await settle({ 'lb.policy': 'user', 'lb.requireUser': 'true' });
    const forged = await token('mallory', { key: new TextEncoder().encode('x'.repeat(40)) });
    const expired = await token('old', { expiresIn: Math.floor(Date.now() / 1000) - 10 });
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const unsigned = `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ sub: 'nobody', exp: 2e9 })}.`;
    for (const [what, jwt, pattern] of [
      ['forged', forged, /signature verification failed/],
      ['expired', expired, /expired/],
      ['unsigned', unsigned, /invalid bearer token/],
      ['garbage', 'not-a-jwt', /invalid bearer token/],
    ] as const) {
      const reply = await asUser(clientA, jwt);
      assert.equal(reply.code, grpc.status.UNAUTHENTICATED, what);
      assert.match(reply.details, pattern, what);
    }
    const none = await call(clientB);
    assert.equal(none.code, grpc.status.UNAUTHENTICATED);
    assert.match(none.details, /requires a user \(lb\.requireUser\)/);
    await settle({ 'lb.policy': 'user' });
    assert.equal((await call(clientB)).code, 0, 'without requireUser: round robin');
  });

  test('maxUsersPerInstance: reject names the service and limit, overflow goes to the least loaded', async () => {
    const counts = () => echoes.map((e) => a.affinity.usersOf('echo', e.instanceId));
    const min = Math.min(...counts());
    await settle({ 'lb.policy': 'user', 'lb.maxUsersPerInstance': String(min) });
    const rejected = await asUser(clientB, await jwtOf('late-1'));
    assert.equal(rejected.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(
      rejected.details,
      /every live instance of echo already has its limit of \d+ users \(lb\.maxUsersPerInstance/,
    );
    // Existing users are still served.
    assert.equal((await asUser(clientB, await jwtOf('user-1@example.com'))).code, 0);
    await settle({
      'lb.policy': 'user',
      'lb.maxUsersPerInstance': String(min),
      'lb.whenFull': 'overflow',
    });
    const before = counts();
    const least = echoes[before.indexOf(Math.min(...before))]!.instanceId;
    const overflow = await asUser(clientA, await jwtOf('late-2'));
    assert.deepEqual([overflow.code, overflow.instance], [0, least]);
  });

  test('idle expiry: the server removes an unused preference after lb.idleSeconds and every gateway drops it; "last seen" is not written per call', async () => {
    const idleSeconds = 2;
    await settle({ 'lb.policy': 'user', 'lb.idleSeconds': String(idleSeconds) });
    const user = 'idle-user';
    const jwt = await jwtOf(user);
    const first = await asUser(clientA, jwt);
    assert.equal(first.code, 0);
    const key = Keys.affinity('echo', userKeyOf(user));
    const store = await bus.store(AffinityBucket);
    const stored = await until('stored', () => store.get(key));
    for (let i = 0; i < 5; i++) await asUser(i % 2 ? clientA : clientB, jwt);
    // 5 calls within a tenth of the idle period (200 ms) write nothing.
    assert.equal((await store.get(key))!.revision, stored.revision);
    await until('both gateways hold it', () =>
      [a, b].every((g) => g.affinity.get('echo', userKeyOf(user)) !== undefined),
    );
    const lapse = stored.value.lastSeenAtMs + idleSeconds * 1000;
    stoppedAt = Date.now();
    try {
      assert.ok(stoppedAt < lapse, "the gateways' clock stops before the preference lapses");
      await until(
        'removed from the bucket and from both gateways',
        async () =>
          (await store.get(key)) === undefined &&
          [a, b].every((g) => g.affinity.get('echo', userKeyOf(user)) === undefined),
        lapse + 1000 - Date.now(),
      );
    } finally {
      stoppedAt = undefined;
    }
    const assigned = await counterValue(gatewayMetrics.affinityAssignments, { service: 'echo' });
    assert.equal((await asUser(clientB, jwt)).code, 0);
    assert.equal(
      await counterValue(gatewayMetrics.affinityAssignments, { service: 'echo' }),
      assigned + 1,
      'a new preference was made',
    );
    await settle({ 'lb.policy': 'user' });
  });

  test('a gateway restarted from nothing routes existing users to their stored instances once ready', async () => {
    await b.stop();
    clientB.close();
    const assigned = await counterValue(gatewayMetrics.affinityAssignments, { service: 'echo' });
    b = await startGateway(
      bus,
      cluster.servers,
      logs.logger,
      { id: 'gw-b2', affinity: affinityConfig },
      clock,
    );
    clientB = echoClient(`127.0.0.1:${b.port}`);
    assert.equal(b.notReady(), undefined);
    assert.ok(
      b.affinity.size >= 200,
      `B holds ${b.affinity.size} preferences before its first call`,
    );
    await until('routes built', () =>
      b.table.route(ECHO_SERVICE)?.endpoints.every((e) => e.available),
    );
    for (let i = 0; i < 200; i += 20) {
      const user = `user-${i}@example.com`;
      const stored = b.affinity.get('echo', userKeyOf(user))!;
      const reply = await asUser(clientB, await jwtOf(user));
      assert.deepEqual([reply.code, reply.instance], [0, stored.instanceId]);
    }
    assert.equal(
      await counterValue(gatewayMetrics.affinityAssignments, { service: 'echo' }),
      assigned,
      'no user got a new instance',
    );
  });

  test('kill -9 of a user instance: strict says UNAVAILABLE; failover moves the user and publishes AFFINITY_MOVED', async () => {
    const victim = echoes[0]!;
    const users = [];
    for (let i = 0; i < 200 && users.length < 3; i++) {
      const user = `user-${i}@example.com`;
      if (a.affinity.get('echo', userKeyOf(user))?.instanceId === victim.instanceId)
        users.push(user);
    }
    assert.equal(users.length, 3);
    await settle({ 'lb.policy': 'user', 'lb.whenDown': 'strict' });
    await victim.kill('SIGKILL');
    const strict = await asUser(clientA, await jwtOf(users[0]!));
    assert.equal(strict.code, grpc.status.UNAVAILABLE);
    assert.match(strict.details, /the user's instance echo-1 of echo .*lb\.whenDown=strict/);
    // The registry still says UP (no discovery here): the connection failure decides.
    await settle({ 'lb.policy': 'user' }, false);
    for (const [i, user] of users.entries()) {
      const jwt = await jwtOf(user);
      const next = await asUser(i % 2 ? clientA : clientB, jwt);
      assert.equal(next.code, 0, next.details);
      assert.notEqual(next.instance, victim.instanceId);
      for (let k = 0; k < 4; k++) {
        const later = await asUser(k % 2 ? clientB : clientA, jwt);
        assert.deepEqual(
          [later.code, later.instance],
          [0, next.instance],
          `${user} sticks to its new instance`,
        );
      }
    }
    const moved = await until('AFFINITY_MOVED events', () => {
      const found = events.filter((e) => e.kind === Kind.AFFINITY_MOVED);
      return found.length >= users.length ? found : undefined;
    });
    for (const event of moved) {
      assert.equal(event.instanceId, victim.instanceId);
      assert.match(event.userKey, /^[A-Za-z0-9_-]{43}$/);
    }
  });

  test('no user id or token reaches the bus or the logs', async () => {
    const snapshot = await bus.snapshot('affinity');
    assert.ok(snapshot.entries.size >= 200);
    const onBus = JSON.stringify([...snapshot.entries], (_, v) =>
      typeof v === 'bigint' ? String(v) : v,
    );
    const inEvents = JSON.stringify(events);
    const inLogs = JSON.stringify(logs.lines);
    for (const [user, jwt] of tokens) {
      for (const [where, text] of [
        ['bucket', onBus],
        ['events', inEvents],
        ['logs', inLogs],
      ] as const) {
        assert.ok(!text.includes(user), `${where} contains the user id ${user}`);
        assert.ok(!text.includes(jwt), `${where} contains a token`);
        assert.ok(!text.includes(jwt.split('.')[1]!), `${where} contains a token's claims`);
      }
    }
    assert.ok(!inLogs.includes(MESH_SECRET) && !inLogs.includes(JWT_SECRET), 'no secret in logs');
  });
});

function userKeyOf(user: string): string {
  return createHmac('sha256', MESH_SECRET)
    .update(JSON.stringify(['', user]))
    .digest('base64url');
}
