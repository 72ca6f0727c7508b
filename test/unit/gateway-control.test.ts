import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SignJWT } from 'jose';
import { ConfigError, validateConfig } from '../../services/common/config.js';
import { parseInstanceMetadata } from '../../services/common/lb-metadata.js';
import { gatewayConfigSchema } from '../../services/gateway/config.js';
import { ExposurePolicy } from '../../services/gateway/exposure.js';
import { Identities } from '../../services/gateway/identity.js';

const base = { id: 'gw-1', bus: { servers: ['nats://127.0.0.1:4222'] } };

test('exposure: halyard.* is never routed unless named; an allow list restricts the rest', () => {
  const open = new ExposurePolicy({ exposeInternal: [] });
  for (const name of [
    'halyard.discovery.v1.Registry',
    'halyard.launcher.v1.Launcher',
    'halyard.cache.v1.Cache',
  ]) {
    assert.deepEqual(open.of(name), { routed: false, reason: 'internal' }, name);
  }
  assert.deepEqual(open.of('demo.greeter.v1.Greeter'), { routed: true });
  assert.deepEqual(open.of('halyardish.v1.Thing'), { routed: true }, 'a prefix is a package');

  const named = new ExposurePolicy({
    allow: ['demo.', 'shop.orders.v1.Orders'],
    exposeInternal: ['halyard.cache.v1.Cache'],
  });
  assert.deepEqual(named.of('halyard.cache.v1.Cache'), { routed: false, reason: 'not-allowed' });
  assert.deepEqual(named.of('demo.greeter.v1.Greeter'), { routed: true });
  assert.deepEqual(named.of('shop.orders.v1.Orders'), { routed: true });
  assert.deepEqual(named.of('shop.orders.v1.OrdersAdmin'), {
    routed: false,
    reason: 'not-allowed',
  });
  assert.deepEqual(named.of('halyard.discovery.v1.Registry'), {
    routed: false,
    reason: 'internal',
  });
  const withInternal = new ExposurePolicy({ exposeInternal: ['halyard.testing.'] });
  assert.deepEqual(withInternal.of('halyard.testing.v1.Echo'), { routed: true });
  assert.match(
    ExposurePolicy.message('halyard.discovery.v1.Registry', 'internal'),
    /halyard\.discovery\.v1\.Registry is a Halyard control-plane service/,
  );
});

test('gateway config: routing entries, limits and JWT settings are validated with the field named', () => {
  const config = gatewayConfigSchema.parse(base);
  assert.deepEqual(config.routing, { exposeInternal: [] });
  assert.equal(config.limits.maxConcurrentStreams, 1000);
  assert.equal(config.limits.maxConnections, 10_000);
  assert.equal(config.limits.idleConnectionSeconds, 600);
  assert.equal(config.limits.maxTimeoutMs, 3_600_000);
  assert.equal(config.affinity.jwt.maxLifetimeSeconds, 86_400);
  assert.throws(
    () =>
      validateConfig(
        gatewayConfigSchema,
        {
          ...base,
          routing: { allow: ['demo/greeter'], exposeInternal: ['halyard.*'], deny: [] },
          affinity: { jwt: { jwksUrls: ['file:///etc/keys.json'], jwksFile: 'k.json' } },
        },
        'gw.yaml',
      ),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /gw\.yaml/);
      assert.match(error.message, /routing\.allow\.0: must be a gRPC service name/);
      assert.match(error.message, /routing\.exposeInternal\.0: must be a gRPC service name/);
      assert.match(error.message, /routing.*deny/);
      assert.match(error.message, /affinity\.jwt\.jwksUrls\.0/);
      assert.match(error.message, /affinity\.jwt.*jwksFile/);
      return true;
    },
  );
});

test('lb.idempotentMethods: full method names, validated, deduplicated and sorted', () => {
  const parsed = parseInstanceMetadata({
    'lb.idempotentMethods': 'shop.v1.Orders/Get, shop.v1.Orders/List,shop.v1.Orders/Get',
  });
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.settings.lb.idempotentMethods, [
    'shop.v1.Orders/Get',
    'shop.v1.Orders/List',
  ]);
  const none = parseInstanceMetadata({});
  assert.ok(none.ok);
  assert.deepEqual(none.settings.lb.idempotentMethods, []);
  const bad = parseInstanceMetadata({ 'lb.idempotentMethods': 'Get,/shop.v1.Orders/List' });
  assert.equal(bad.ok, false);
  assert.match(
    (bad as { problems: readonly string[] }).problems.join('\n'),
    /metadata\["lb\.idempotentMethods"\]: must list full method names/,
  );
});

test('identities: exp required, lifetime capped, iss and aud checked, the user key depends on the issuer', async () => {
  const secret = 's'.repeat(32);
  const key = new TextEncoder().encode(secret);
  const now = Math.floor(Date.now() / 1000);
  const token = (claims: { iss?: string; aud?: string; exp?: number; iat?: number }) => {
    const jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('dana');
    if (claims.iss) jwt.setIssuer(claims.iss);
    if (claims.aud) jwt.setAudience(claims.aud);
    if (claims.exp) jwt.setExpirationTime(claims.exp);
    if (claims.iat) jwt.setIssuedAt(claims.iat);
    return jwt.sign(key);
  };
  const open = await Identities.load({ meshSecret: 'mesh-secret-xxxxxxxx', hs256Secret: secret });
  assert.deepEqual(open.uncheckedClaims, ['iss', 'aud']);
  const refused = async (ids: Identities, jwt: string, why: RegExp) => {
    const result = await ids.verify(jwt);
    assert.equal(result.ok, false);
    assert.match((result as { message: string }).message, why);
  };
  await refused(open, await token({}), /no "exp" claim/);
  await refused(
    open,
    await token({ iat: now, exp: now + 2 * 86_400 }),
    /lives 172800 s, longer than this gateway accepts \(86400 s\)/,
  );
  // Without `iat` the lifetime counts from now: a margin far beyond a slow run's delay.
  await refused(
    open,
    await token({ exp: now + 3 * 86_400 }),
    /longer than this gateway accepts \(86400 s\)/,
  );
  await refused(
    open,
    await token({ iat: now - 86_400, exp: now + 3600 }),
    /lives 90000 s, longer than this gateway accepts/,
  );
  const a = await open.verify(await token({ iss: 'idp-a', exp: now + 60 }));
  const b = await open.verify(await token({ iss: 'idp-b', exp: now + 60 }));
  assert.ok(a.ok && b.ok);
  assert.notEqual(a.userKey, b.userKey, 'one subject, two issuers: two users');
  assert.equal(a.userKey, open.userKey('idp-a', 'dana'));

  const strict = await Identities.load({
    meshSecret: 'mesh-secret-xxxxxxxx',
    hs256Secret: secret,
    issuer: 'idp-a',
    audience: 'shop',
    maxLifetimeSeconds: 600,
  });
  assert.deepEqual(strict.uncheckedClaims, []);
  await refused(
    strict,
    await token({ iss: 'idp-a', aud: 'other', exp: now + 60 }),
    /"aud" claim is not accepted/,
  );
  await refused(
    strict,
    await token({ iss: 'idp-b', aud: 'shop', exp: now + 60 }),
    /"iss" claim is not accepted/,
  );
  await refused(strict, await token({ iss: 'idp-a', exp: now + 60 }), /no "aud" claim/);
  await refused(
    strict,
    await token({ iss: 'idp-a', aud: 'shop', iat: now, exp: now + 601 }),
    /longer than/,
  );
  const ok = await strict.verify(await token({ iss: 'idp-a', aud: 'shop', exp: now + 60 }));
  assert.ok(ok.ok);
});
