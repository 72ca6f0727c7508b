import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { SignJWT } from 'jose';
import {
  AffinityBucket,
  type AffinityPreference,
  type Bus,
  Keys,
  type KvStore,
} from '../../bus/index.js';
import { parseInstanceMetadata } from '../../services/common/lb-metadata.js';
import { AFFINITY_HEADER } from '../../services/gateway/affinity-release.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { INSTANCE_HEADER } from '../../services/gateway/grpc-status.js';
import { GatewayLogIds } from '../../services/gateway/log-ids.js';
import { gatewayMetrics } from '../../services/gateway/metrics.js';
import { startBusCluster } from '../support/bus-cluster.js';
import {
  ECHO_SERVICE,
  type EchoClient,
  type EchoRequest,
  echoClient,
} from '../support/echo-service.js';
import { register, startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import { counterValue } from '../support/metrics.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { type EchoProcess, spawnEcho } from '../support/processes.js';
import { until } from '../support/wait.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const JWT_SECRET = 'a-test-signing-secret-of-at-least-32-bytes!';
const MESH_SECRET = 'mesh-secret-for-user-keys';
const affinityConfig = { meshSecret: MESH_SECRET, jwt: { hs256Secret: JWT_SECRET } };

function token(sub: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(JWT_SECRET));
}

function userKeyOf(user: string): string {
  return createHmac('sha256', MESH_SECRET)
    .update(JSON.stringify(['', user]))
    .digest('base64url');
}

/** How the instance is asked to release: a trailer or a response header. */
type Via = 'trailer' | 'header';

interface Answer {
  readonly code: number;
  readonly details: string;
  readonly instance: string | undefined;
  /** What the client received as response headers and trailers. */
  readonly headers: grpc.Metadata | undefined;
  readonly trailers: grpc.Metadata;
}

/** One unary call; `release` makes the echo instance answer with `x-halyard-affinity: release`. */
function call(
  client: EchoClient,
  { jwt, release }: { jwt?: string; release?: Via } = {},
): Promise<Answer> {
  const metadata = new grpc.Metadata();
  if (jwt) metadata.set('authorization', `Bearer ${jwt}`);
  const request: EchoRequest = { payload: Buffer.from('x'), trailers: { 'echo-kept': 'yes' } };
  if (release === 'trailer')
    request.trailers = { ...request.trailers, [AFFINITY_HEADER]: 'release' };
  if (release === 'header') metadata.set(`echo-respond-${AFFINITY_HEADER}`, 'release');
  metadata.set('echo-asked', 'yes');
  return new Promise((resolve) => {
    let instance: string | undefined;
    let headers: grpc.Metadata | undefined;
    const unary = client.unary(request, metadata, { deadline: Date.now() + 8000 }, (_, reply) => {
      instance = reply?.instanceId;
    });
    unary.on('metadata', (received) => {
      headers = received;
    });
    unary.on('status', (status) =>
      resolve({
        code: status.code,
        details: status.details,
        instance,
        headers,
        trailers: status.metadata,
      }),
    );
  });
}

describe('release at logoff through two gateway replicas', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let store: KvStore<AffinityPreference>;
  let a: Gateway;
  let b: Gateway;
  let clientA: EchoClient;
  let clientB: EchoClient;
  const echoes: EchoProcess[] = [];
  const logs = captureLogs('debug');

  async function settle(metadata: Record<string, string>): Promise<void> {
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
          route.endpoints.every((e) => e.available)
        );
      });
    }
  }

  /** Pins `user` with a call through `via`; resolves once both replicas and the bucket hold it. */
  async function pin(user: string, via: EchoClient) {
    const jwt = await token(user);
    const userKey = userKeyOf(user);
    const first = await call(via, { jwt });
    assert.equal(first.code, 0, first.details);
    for (const gateway of [a, b]) {
      await until('both replicas hold the preference', () => {
        return gateway.affinity.get('echo', userKey)?.instanceId === first.instance;
      });
    }
    const stored = await until('the bucket holds the preference', () =>
      store.get(Keys.affinity('echo', userKey)),
    );
    assert.equal(stored.value.instanceId, first.instance);
    return { jwt, userKey, stored, instance: first.instance! };
  }

  const released = () =>
    counterValue(gatewayMetrics.affinityReleases, { service: 'echo', outcome: 'released' });
  const assigned = () => counterValue(gatewayMetrics.affinityAssignments, { service: 'echo' });

  before(async () => {
    ({ cluster, bus } = await startBusCluster('release-test', logs.logger));
    store = await bus.store(AffinityBucket);
    for (let i = 1; i <= 3; i++) echoes.push(await spawnEcho({ instanceId: `echo-${i}` }));
    const options = { affinity: affinityConfig };
    a = await startGateway(bus, cluster.servers, logs.logger, { id: 'gw-a', ...options });
    b = await startGateway(bus, cluster.servers, logs.logger, { id: 'gw-b', ...options });
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

  for (const [via, through, next] of [
    ['trailer', 'A', 'B'],
    ['header', 'B', 'A'],
  ] as const) {
    test(`a release in a ${via} through ${through}: stripped, removed from the bucket, the next call through ${next} is assigned afresh`, async () => {
      const [logoffClient, nextClient] = through === 'A' ? [clientA, clientB] : [clientB, clientA];
      const [logoffGateway, nextGateway] = through === 'A' ? [a, b] : [b, a];
      const user = `leaving-by-${via}@example.com`;
      const pinned = await pin(user, logoffClient);
      const bucketKey = Keys.affinity('echo', pinned.userKey);
      const releasedBefore = await released();

      const logoff = await call(logoffClient, { jwt: pinned.jwt, release: via });
      assert.equal(logoff.code, 0, logoff.details);
      assert.equal(logoff.instance, pinned.instance, 'the logoff ran on the pinned instance');
      for (const received of [logoff.headers!, logoff.trailers]) {
        assert.deepEqual(
          received.get(AFFINITY_HEADER),
          [],
          `no ${AFFINITY_HEADER} reached the client`,
        );
      }
      // The rest of the response is untouched.
      assert.deepEqual(logoff.headers!.get('echo-asked'), ['yes']);
      assert.deepEqual(logoff.headers!.get(INSTANCE_HEADER), [pinned.instance]);
      assert.deepEqual(logoff.trailers.get('echo-kept'), ['yes']);
      assert.equal(await released(), releasedBefore + 1);
      assert.equal(
        logoffGateway.affinity.get('echo', pinned.userKey),
        undefined,
        'the releasing replica forgot at once',
      );
      await until('the bucket no longer holds the preference', async () =>
        (await store.get(bucketKey)) === undefined ? true : undefined,
      );
      await until(
        `${next} saw the removal`,
        () => nextGateway.affinity.get('echo', pinned.userKey) === undefined,
      );
      const line = logs
        .withId(GatewayLogIds.affinityReleased)
        .find((l) => l.userKey === pinned.userKey);
      assert.ok(line, 'the release is logged with the user key');
      assert.equal(line.instanceId, pinned.instance);
      assert.ok(!JSON.stringify(logs.lines).includes(user), 'never with the user id');

      const assignedBefore = await assigned();
      const again = await call(nextClient, { jwt: pinned.jwt });
      assert.equal(again.code, 0, again.details);
      assert.equal(await assigned(), assignedBefore + 1, `${next} decided anew`);
      const recreated = await until('a new preference in the bucket', async () => {
        const entry = await store.get(bucketKey);
        return entry?.value.gatewayId === nextGateway.config.id ? entry : undefined;
      });
      assert.ok(recreated.revision > pinned.stored.revision, 'a new value, not the old one');
      assert.ok(recreated.value.createdAtMs > pinned.stored.value.createdAtMs);
      assert.equal(recreated.value.instanceId, again.instance);
    });
  }

  test('a release on a call without a user is stripped, ignored and counted', async () => {
    const bystander = await pin('bystander@example.com', clientA);
    const held = (await bus.snapshot('affinity')).entries.size;
    const noUser = () =>
      counterValue(gatewayMetrics.affinityReleases, { service: 'echo', outcome: 'no-user' });
    const [ignoredBefore, releasedBefore] = [await noUser(), await released()];
    for (const via of ['trailer', 'header'] as const) {
      const anonymous = await call(clientA, { release: via });
      assert.equal(anonymous.code, 0, anonymous.details);
      assert.deepEqual(anonymous.headers!.get(AFFINITY_HEADER), []);
      assert.deepEqual(anonymous.trailers.get(AFFINITY_HEADER), []);
    }
    assert.equal(await noUser(), ignoredBefore + 2);
    assert.equal(await released(), releasedBefore);
    assert.equal(a.affinity.get('echo', bystander.userKey)?.instanceId, bystander.instance);
    const after = await bus.snapshot('affinity');
    assert.equal(after.entries.size, held, 'no preference removed');
  });

  test('`halyard affinity clear` still removes a preference, and both replicas forget it', async () => {
    const pinned = await pin('cleared@example.com', clientB);
    const output = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        [
          '--import',
          'tsx',
          'services/cli/main.ts',
          'affinity',
          'clear',
          pinned.userKey,
          '--service',
          'echo',
          '--servers',
          cluster.servers.join(','),
        ],
        { cwd: ROOT },
        (error, stdout, stderr) => (error ? reject(new Error(stderr)) : resolve(stdout)),
      ),
    );
    assert.match(output, /cleared 1 preference/);
    for (const gateway of [a, b]) {
      await until(
        'the replica forgot',
        () => gateway.affinity.get('echo', pinned.userKey) === undefined,
      );
    }
    const assignedBefore = await assigned();
    assert.equal((await call(clientA, { jwt: pinned.jwt })).code, 0);
    assert.equal(await assigned(), assignedBefore + 1, 'assigned afresh');
  });

  test('a service without the user policy: the header is stripped and nothing is released', async () => {
    await settle({});
    const notUser = () =>
      counterValue(gatewayMetrics.affinityReleases, {
        service: 'echo',
        outcome: 'not-user-policy',
      });
    const before = await notUser();
    const answer = await call(clientB, {
      jwt: await token('round-robin@example.com'),
      release: 'trailer',
    });
    assert.equal(answer.code, 0, answer.details);
    assert.deepEqual(answer.trailers.get(AFFINITY_HEADER), []);
    assert.equal(await notUser(), before + 1);
  });
});
