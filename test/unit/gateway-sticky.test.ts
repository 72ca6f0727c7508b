import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { exportJWK, SignJWT } from 'jose';
import { pino } from 'pino';
import {
  type AffinityPreference,
  Codecs,
  type EntryChange,
  Keys,
  type LocalView,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { parseInstanceMetadata } from '../../services/common/lb-metadata.js';
import { AffinityTable } from '../../services/gateway/affinity.js';
import { AffinityReleases } from '../../services/gateway/affinity-release.js';
import {
  type CallContext,
  type Pick,
  Refusal,
  UserBalancer,
} from '../../services/gateway/balancer.js';
import { decodePreference } from '../../services/gateway/compact-preferences.js';
import { Endpoint } from '../../services/gateway/endpoint.js';
import { Identities } from '../../services/gateway/identity.js';
import { gatewayMetrics } from '../../services/gateway/metrics.js';
import type { Route } from '../../services/gateway/routing-table.js';
import type { Upstream } from '../../services/gateway/upstream.js';
import { counterValue } from '../support/metrics.js';
import { instance, preference, userKey } from '../support/samples.js';
import { until } from '../support/wait.js';

const { InstanceStatus } = halyard.discovery.v1;
const silent = pino({ level: 'silent' });

/** A local view fed by hand: what the bucket's watch would deliver. */
class FakeView {
  readonly held = new Map<string, { value: AffinityPreference; revision: number }>();
  readonly listeners = new Set<(c: EntryChange<AffinityPreference>) => void>();
  lastRevision = 0;
  get(key: string) {
    return this.held.get(key)?.value;
  }
  *entries(): IterableIterator<[string, AffinityPreference]> {
    for (const [k, v] of this.held) yield [k, v.value];
  }
  onEntry(listener: (c: EntryChange<AffinityPreference>) => void) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  put(value: AffinityPreference): number {
    const key = Keys.affinity(value.serviceId, value.userKey);
    const revision = ++this.lastRevision;
    this.held.set(key, { value, revision });
    for (const l of this.listeners) l({ op: 'put', key, value, revision });
    return revision;
  }
  remove(key: string): void {
    const revision = ++this.lastRevision;
    this.held.delete(key);
    for (const l of this.listeners) l({ op: 'remove', key, revision });
  }
}

function table(connected: () => boolean = () => true, now: () => number = Date.now) {
  const view = new FakeView();
  const written: AffinityPreference[] = [];
  const removed: string[] = [];
  const writer = {
    put: async (value: AffinityPreference) => {
      written.push(value);
      return view.put(value);
    },
    remove: async (key: string) => {
      removed.push(key);
      view.remove(key);
    },
  };
  const affinity = new AffinityTable(
    view as unknown as LocalView<AffinityPreference>,
    writer,
    { gatewayId: 'gw-1', connected, retryMs: 10, expiryCheckMs: 50, now },
    silent,
  );
  return { view, written, removed, affinity };
}

const endpoint = (id: string, status: number = InstanceStatus.UP) =>
  new Endpoint(instance({ serviceId: 'orders', instanceId: id, status }), {} as Upstream);
const settings = (metadata: Record<string, string>) => {
  const parsed = parseInstanceMetadata({ 'lb.policy': 'user', ...metadata });
  assert.ok(parsed.ok);
  return parsed.settings.lb;
};
const ctx = (key: string | undefined): CallContext => ({ headers: {}, userKey: key });
/** The endpoint a pick chose; fails the test on a refusal or no choice. */
const chosen = (pick: Pick): Endpoint => {
  assert.ok(pick !== undefined && !(pick instanceof Refusal), `expected an endpoint, got ${pick}`);
  return pick;
};

test('two gateways with the same instances place a new user alike, and keep it there when instances are added', async () => {
  const endpoints = ['o-1', 'o-2', 'o-3'].map((id) => endpoint(id));
  const one = table();
  const two = table();
  const b1 = new UserBalancer('orders', settings({}), one.affinity, () => {});
  const b2 = new UserBalancer('orders', settings({}), two.affinity, () => {});
  const placed = new Map<string, string>();
  for (let i = 0; i < 300; i++) {
    const key = userKey(`u${i}`);
    const x = chosen(b1.pick(endpoints, undefined, ctx(key)));
    assert.equal(chosen(b2.pick(endpoints, undefined, ctx(key))).id, x.id);
    placed.set(key, x.id);
  }
  const spread = new Map<string, number>();
  for (const id of placed.values()) spread.set(id, (spread.get(id) ?? 0) + 1);
  for (const n of spread.values()) assert.ok(n > 60, `balanced: ${[...spread]}`);
  const more = [...endpoints, endpoint('o-4')];
  for (const [key, id] of placed) assert.equal(chosen(b1.pick(more, undefined, ctx(key))).id, id);
  await until('written', () => one.affinity.queued === 0);
  assert.equal(one.written.length, 300, 'one write per decision, none per hit');
});

test('counts follow the effective preferences; full instances reject or overflow', () => {
  const { affinity } = table();
  const endpoints = ['o-1', 'o-2'].map((id) => endpoint(id));
  const reject = new UserBalancer(
    'orders',
    settings({ 'lb.maxUsersPerInstance': '2' }),
    affinity,
    () => {},
  );
  for (let i = 0; i < 4; i++) chosen(reject.pick(endpoints, undefined, ctx(userKey(`u${i}`))));
  assert.deepEqual([affinity.usersOf('orders', 'o-1'), affinity.usersOf('orders', 'o-2')], [2, 2]);
  const refusal = reject.pick(endpoints, undefined, ctx(userKey('late')));
  assert.ok(refusal instanceof Refusal);
  assert.equal(refusal.code, 8);
  assert.match(refusal.message, /orders already has its limit of 2 users/);
  const overflow = new UserBalancer(
    'orders',
    settings({ 'lb.maxUsersPerInstance': '2', 'lb.whenFull': 'overflow' }),
    affinity,
    () => {},
  );
  chosen(overflow.pick(endpoints, undefined, ctx(userKey('late'))));
  assert.equal(affinity.usersOf('orders', 'o-1') + affinity.usersOf('orders', 'o-2'), 5);
  assert.equal(affinity.size, 5);
});

test('a dead preferred instance: failover moves the user and says so, strict refuses', () => {
  const { affinity } = table();
  const endpoints = [endpoint('o-1', InstanceStatus.DOWN), endpoint('o-2'), endpoint('o-3')];
  const key = userKey('alice');
  affinity.assign('orders', key, 'o-1', 600);
  const moves: string[] = [];
  const failover = new UserBalancer('orders', settings({}), affinity, (_s, k, from, to) =>
    moves.push(`${k === key} ${from}->${to}`),
  );
  const strict = new UserBalancer(
    'orders',
    settings({ 'lb.whenDown': 'strict' }),
    affinity,
    () => {},
  );
  const refusal = strict.pick(endpoints, undefined, ctx(key));
  assert.ok(refusal instanceof Refusal);
  assert.equal(refusal.code, 14);
  assert.match(refusal.message, /o-1 of orders is DOWN, and lb\.whenDown=strict/);
  const to = chosen(failover.pick(endpoints, undefined, ctx(key)));
  assert.notEqual(to.id, 'o-1');
  assert.deepEqual(moves, [`true o-1->${to.id}`]);
  assert.equal(affinity.get('orders', key)?.instanceId, to.id);
  assert.equal(
    chosen(failover.pick(endpoints, undefined, ctx(key))).id,
    to.id,
    'sticks to the new one',
  );
});

test('while the bus is away decisions route locally and queue; a newer value made elsewhere wins', async () => {
  let connected = false;
  let checks = 0;
  const { view, written, affinity } = table(() => {
    checks++;
    return connected;
  });
  const mine = userKey('mine');
  const theirs = userKey('theirs');
  affinity.assign('orders', mine, 'o-1', 600, Date.now() - 1000);
  affinity.assign('orders', theirs, 'o-1', 600, Date.now() - 1000);
  assert.equal(affinity.get('orders', mine)?.instanceId, 'o-1', 'routed from memory');
  await until('the writer found the bus away on two rounds', () => checks >= 2);
  assert.equal(written.length, 0, 'nothing written while disconnected');
  assert.equal(affinity.queued, 2);
  // Another gateway decided `theirs` later and its write reached the bucket first.
  view.put(
    preference({ serviceId: 'orders', userKey: theirs, instanceId: 'o-2', gatewayId: 'gw-2' }),
  );
  assert.equal(affinity.get('orders', theirs)?.instanceId, 'o-2');
  assert.deepEqual([affinity.usersOf('orders', 'o-1'), affinity.usersOf('orders', 'o-2')], [1, 1]);
  connected = true;
  await until('queue flushed', () => affinity.queued === 0);
  assert.deepEqual(
    written.map((w) => w.userKey),
    [mine],
    'the stale queued write was dropped, the other written',
  );
  assert.equal(view.get(Keys.affinity('orders', theirs))?.instanceId, 'o-2');
  affinity.close();
});

test('last seen is refreshed at most once per tenth of the idle period', async () => {
  const { written, affinity } = table();
  const key = userKey('bob');
  const first = affinity.assign('orders', key, 'o-1', 100, Date.now() - 5000);
  await until('written', () => affinity.queued === 0);
  affinity.touch(first, first.lastSeenAtMs + 9_000);
  assert.equal(affinity.queued, 0, 'within 10 s of a 100 s period: nothing');
  affinity.touch(first, first.lastSeenAtMs + 10_000);
  await until('written', () => written.length === 2);
  const refreshed = affinity.get('orders', key)!;
  affinity.touch(refreshed, refreshed.lastSeenAtMs + 1);
  assert.equal(affinity.queued, 0, 'just refreshed: nothing queued, so nothing to write');
  assert.equal(written.length, 2);
});

test('a release forgets the user here at once and in the bucket; the next pick decides afresh', async () => {
  const { view, written, removed, affinity } = table();
  const endpoints = ['o-1', 'o-2', 'o-3'].map((id) => endpoint(id));
  const balancer = new UserBalancer('orders', settings({}), affinity, () => {});
  const key = userKey('leaving');
  const first = chosen(balancer.pick(endpoints, undefined, ctx(key)));
  await until('written', () => affinity.queued === 0);
  const bucketKey = Keys.affinity('orders', key);
  affinity.release('orders', key);
  assert.equal(affinity.get('orders', key), undefined, 'forgotten before the bucket is told');
  assert.equal(affinity.usersOf('orders', first.id), 0);
  await until('removed from the bucket', () => affinity.queued === 0);
  assert.deepEqual(removed, [bucketKey]);
  assert.equal(view.get(bucketKey), undefined);
  const assigned = await counterValue(gatewayMetrics.affinityAssignments, { service: 'orders' });
  assert.equal(chosen(balancer.pick(endpoints, undefined, ctx(key))).id, first.id, 'same live set');
  assert.equal(
    await counterValue(gatewayMetrics.affinityAssignments, { service: 'orders' }),
    assigned + 1,
    'decided afresh, not found',
  );
  await until('written', () => affinity.queued === 0);
  assert.equal(written.length, 2, 'the new decision is written');
  assert.equal(view.get(bucketKey)?.instanceId, first.id);
  affinity.close();
});

test('a release waits for the bus; a refresh on its way is not adopted again; a new decision supersedes it', async () => {
  let connected = true;
  let now = Date.now();
  const { view, removed, affinity } = table(
    () => connected,
    () => now,
  );
  const stale = userKey('stale');
  const back = userKey('back');
  const before = affinity.assign('orders', stale, 'o-1', 600);
  affinity.assign('orders', back, 'o-1', 600);
  await until('written', () => affinity.queued === 0);
  connected = false;
  now += 1000;
  affinity.release('orders', stale);
  affinity.release('orders', back);
  // A refresh another gateway sent before the release reaches the view only now.
  view.put({ ...before, lastSeenAtMs: now - 500, gatewayId: 'gw-2' });
  assert.equal(affinity.get('orders', stale), undefined, 'the released value is not adopted again');
  assert.equal(affinity.usersOf('orders', 'o-1'), 0);
  // `back` logs in again before the removal could be written: the new value replaces it.
  now += 1000;
  affinity.assign('orders', back, 'o-2', 600);
  assert.equal(affinity.queued, 2, 'one removal and one decision');
  connected = true;
  await until('flushed', () => affinity.queued === 0);
  assert.deepEqual(removed, [Keys.affinity('orders', stale)]);
  assert.equal(view.get(Keys.affinity('orders', stale)), undefined);
  assert.equal(view.get(Keys.affinity('orders', back))?.instanceId, 'o-2');
  // A later value (a new decision elsewhere) is adopted as usual.
  now += 1000;
  view.put({ ...before, instanceId: 'o-3', lastSeenAtMs: now, gatewayId: 'gw-2' });
  assert.equal(affinity.get('orders', stale)?.instanceId, 'o-3');
  affinity.close();
});

test('x-halyard-affinity from an instance is always stripped, and releases only a user-policy caller', async () => {
  const released: string[] = [];
  const releases = new AffinityReleases(
    { release: (serviceId, key) => released.push(`${serviceId}/${key}`) },
    silent,
  );
  const route = (policy: string): Route => {
    const parsed = parseInstanceMetadata({ 'lb.policy': policy });
    assert.ok(parsed.ok);
    return {
      grpcService: 'acme.Orders',
      serviceId: 'releasing',
      endpoints: [],
      balancer: undefined as never,
      settings: parsed.settings.lb,
    };
  };
  const key = userKey('carol');
  const cases = [
    ['release', 'user', key, 'released'],
    ['release', 'user', undefined, 'no-user'],
    ['release', 'header', key, 'not-user-policy'],
    ['Release please', 'user', key, 'unknown-value'],
  ] as const;
  for (const [value, policy, user, outcome] of cases) {
    const counted = () =>
      counterValue(gatewayMetrics.affinityReleases, { service: 'releasing', outcome });
    const was = await counted();
    const headers: Record<string, string> = { 'x-halyard-affinity': value, 'grpc-status': '0' };
    releases.take(headers, { route: route(policy), userKey: user, instanceId: 'o-1' });
    assert.deepEqual(headers, { 'grpc-status': '0' }, `${outcome}: stripped`);
    assert.equal(await counted(), was + 1, `${outcome}: counted`);
  }
  assert.deepEqual(released, [`releasing/${key}`], 'only the first case released');
});

test('identities: HS256, RS256, ES256 and JWKS verify; forged, expired and unsigned do not; the key is an HMAC', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'halyard-jwt-'));
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ec2 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(join(dir, 'rsa.pem'), rsa.publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(join(dir, 'ec.pem'), ec.publicKey.export({ type: 'spki', format: 'pem' }));
  const jwk = { ...(await exportJWK(ec2.publicKey)), kid: 'k2', alg: 'ES256' };
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk] }));
  const hs = 'h'.repeat(32);
  const ids = await Identities.load({
    meshSecret: 'mesh-secret-xxxxxxxx',
    hs256Secret: hs,
    publicKeyFiles: [join(dir, 'rsa.pem'), join(dir, 'ec.pem')],
    jwksFiles: [join(dir, 'jwks.json')],
  });
  const sign = (
    alg: string,
    key: Parameters<SignJWT['sign']>[0],
    exp: number | string = '1h',
    kid?: string,
  ) =>
    new SignJWT({})
      .setProtectedHeader({ alg, ...(kid ? { kid } : {}) })
      .setSubject('carol')
      .setExpirationTime(exp)
      .sign(key);
  const expected = ids.userKey('', 'carol');
  assert.match(expected, /^[A-Za-z0-9_-]{43}$/);
  assert.ok(!expected.includes('carol'));
  for (const jwt of [
    await sign('HS256', new TextEncoder().encode(hs)),
    await sign('RS256', rsa.privateKey),
    await sign('ES256', ec.privateKey),
    await sign('ES256', ec2.privateKey, '1h', 'k2'),
  ]) {
    assert.deepEqual(await ids.verify(jwt), { ok: true, userKey: expected });
    assert.deepEqual(
      ids.cached(jwt),
      { ok: true, userKey: expected },
      'cached after the first check',
    );
  }
  const forged = await sign('HS256', new TextEncoder().encode('f'.repeat(32)));
  const expired = await sign(
    'HS256',
    new TextEncoder().encode(hs),
    Math.floor(Date.now() / 1000) - 5,
  );
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const unsigned = `${b64({ alg: 'none' })}.${b64({ sub: 'carol' })}.`;
  for (const [jwt, why] of [
    [forged, /signature verification failed/],
    [expired, /expired/],
    [unsigned, /invalid bearer token/],
  ] as const) {
    const result = await ids.verify(jwt);
    assert.equal(result.ok, false);
    assert.match((result as { message: string }).message, why);
    assert.ok(!(result as { message: string }).message.includes('carol'));
  }
  assert.equal(Identities.bearer('Bearer abc.def.ghi'), 'abc.def.ghi');
  assert.equal(Identities.bearer(undefined), undefined);
});

test('gateway config: weak sticky secrets are refused with the field named, and never echoed', async () => {
  const { gatewayConfigSchema } = await import('../../services/gateway/config.js');
  const { validateConfig, ConfigError } = await import('../../services/common/config.js');
  const base = { id: 'gw-1', bus: { servers: ['nats://127.0.0.1:4222'] } };
  assert.throws(
    () =>
      validateConfig(
        gatewayConfigSchema,
        { ...base, affinity: { meshSecret: 'short-mesh', jwt: { hs256Secret: 'tiny-secret' } } },
        'gw.yaml',
      ),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /affinity\.meshSecret: must be at least 16 characters/);
      assert.match(error.message, /affinity\.jwt\.hs256Secret: must be at least 32 characters/);
      assert.ok(!error.message.includes('short-mesh') && !error.message.includes('tiny-secret'));
      return true;
    },
  );
  const ids = await Identities.load({ meshSecret: undefined });
  assert.equal(ids.configured, false);
  const result = await ids.verify('a.b.c');
  assert.deepEqual(result.ok, false);
  assert.match((result as { message: string }).message, /no user verification configured/);
});

test('compact preferences: values round-trip, lapse, leave the counts once, free slots are reused', async () => {
  const { CompactPreferences } = await import('../../services/gateway/compact-preferences.js');
  const store = new CompactPreferences();
  const now = Date.now();
  const values = Array.from({ length: 3000 }, (_, i) =>
    preference({
      serviceId: 'orders',
      userKey: userKey(`u${i}`),
      instanceId: `o-${i % 3}`,
      lastSeenAtMs: i < 10 ? now - 20_000 : now,
      idleSeconds: 10,
    }),
  );
  for (const v of values) store.set(Keys.affinity('orders', v.userKey), v, now);
  const key = (i: number) => Keys.affinity('orders', values[i]!.userKey);
  assert.equal(store.size, 3000);
  assert.deepEqual(store.get(key(2999), now), values[2999]);
  assert.equal(store.get(key(0), now), undefined, 'lapsed: invisible');
  assert.deepEqual(store.peek(key(0)), values[0]);
  assert.equal(store.countedInstance(key(0)), undefined, 'lapsed when stored: never counted');
  assert.equal(store.countedInstance(key(20)), 'o-2');
  const lapsing: string[] = [];
  store.expire(now + 11_000, (k) => lapsing.push(k));
  assert.equal(lapsing.length, 2990);
  store.expire(now + 12_000, (k) => lapsing.push(k));
  assert.equal(lapsing.length, 2990, 'each lapse is reported once');
  store.delete(key(5));
  assert.equal(store.size, 2999);
  store.set('orders.new', { ...values[1]!, userKey: 'new' }, now);
  assert.equal(store.peek('orders.new')?.userKey, 'new');
});

test('users leave the per-instance counts when their preference lapses', async () => {
  let now = Date.now();
  const { affinity } = table(undefined, () => now);
  affinity.assign('orders', userKey('short'), 'o-1', 1);
  affinity.assign('orders', userKey('long'), 'o-1', 600);
  await until('written', () => affinity.queued === 0);
  assert.equal(affinity.usersOf('orders', 'o-1'), 2);
  now += 1000;
  await until('lapsed one left the count', () => affinity.usersOf('orders', 'o-1') === 1);
  assert.equal(affinity.get('orders', userKey('short')), undefined);
  assert.equal(affinity.size, 1);
  affinity.close();
});

test("the bucket loader's decoder accepts exactly what the preference codec accepts", () => {
  const { AffinityPreference } = halyard.affinity.v1;
  // Encoded without the codec's validation, so invalid values can be stored as well.
  const raw = (fields: Record<string, unknown>) =>
    AffinityPreference.encode(AffinityPreference.fromObject(fields)).finish();
  const valid = preference({ gatewayId: '' });
  const samples: Array<[string, Uint8Array]> = [
    ['a preference', Codecs.affinityPreference.encode(preference())],
    ['no gateway id', Codecs.affinityPreference.encode(valid)],
    [
      'the longest ids and user key',
      raw({
        ...valid,
        serviceId: 's'.repeat(64),
        instanceId: 'i'.repeat(64),
        userKey: 'k'.repeat(128),
        gatewayId: 'g'.repeat(64),
      }),
    ],
    ['the shortest user key', raw({ ...valid, userKey: 'k'.repeat(16) })],
    ['times past 2^32 ms', raw({ ...valid, createdAtMs: 2 ** 45, lastSeenAtMs: 2 ** 48 })],
    ['no service id', raw({ ...valid, serviceId: '' })],
    ['a dot in the service id', raw({ ...valid, serviceId: 'a.b' })],
    ['an instance id too long', raw({ ...valid, instanceId: 'i'.repeat(65) })],
    ['a gateway id too long', raw({ ...valid, gatewayId: 'g'.repeat(65) })],
    ['a non-ASCII gateway id', raw({ ...valid, gatewayId: 'gé' })],
    ['a user key too short', raw({ ...valid, userKey: 'k'.repeat(15) })],
    ['a user key too long', raw({ ...valid, userKey: 'k'.repeat(129) })],
    ['a user key with a slash', raw({ ...valid, userKey: `${'k'.repeat(20)}/` })],
    ['no idle period', raw({ ...valid, idleSeconds: 0 })],
    ['a negative creation time', raw({ ...valid, createdAtMs: -1 })],
    [
      'an unknown field',
      Buffer.concat([Codecs.affinityPreference.encode(valid), Buffer.from([0x48, 0x01])]),
    ],
    ['a truncated value', Codecs.affinityPreference.encode(valid).subarray(0, 20)],
    ['not protobuf', Buffer.from([0xff, 0xff, 0xff])],
    ['empty', new Uint8Array(0)],
  ];
  const outcome = (decode: () => AffinityPreference) => {
    try {
      return { value: decode() };
    } catch (error) {
      return { error: (error as Error).message };
    }
  };
  const origin = { subject: 'orders.key', seq: 7 };
  for (const [name, bytes] of samples) {
    assert.deepEqual(
      outcome(() => decodePreference(bytes, origin)),
      outcome(() => Codecs.affinityPreference.decode(bytes, origin)),
      name,
    );
  }
  assert.deepEqual(decodePreference(Codecs.affinityPreference.encode(valid), origin), valid);
});
