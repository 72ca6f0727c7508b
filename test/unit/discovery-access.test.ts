import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Metadata, status } from '@grpc/grpc-js';
import { registryCredentials } from '../../services/cli/demo-secrets.js';
import { tokenDigest } from '../../services/common/callers.js';
import { ConfigError } from '../../services/common/config.js';
import { RegistryAccess } from '../../services/discovery/access.js';
import { AddressPolicy } from '../../services/discovery/addresses.js';
import { loadDiscoveryConfig } from '../../services/discovery/config.js';
import { RegistryError } from '../../services/discovery/errors.js';
import { loadStaticDefinitions } from '../../services/discovery/static-definitions.js';

const callWithToken = (token: string) => {
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return { metadata, getAuthContext: () => ({}) };
};

test('grants: service id and gRPC name patterns; reading needs its own grant', () => {
  const access = new RegistryAccess({
    tokens: [{ sha256: tokenDigest('t'), identity: 'billing-deployer' }],
    grants: {
      'billing-deployer': { services: { 'billing-*': ['acme.billing.*'] }, read: false },
    },
  });
  const caller = access.identify(callWithToken('t'));
  assert.equal(caller.identity, 'billing-deployer');
  access.requireService(caller, 'billing-eu');
  access.requireClaims(caller, 'billing-eu', ['acme.billing.v1.Billing']);
  const denied = (run: () => void, pattern: RegExp) =>
    assert.throws(run, (e: unknown) => {
      assert.ok(e instanceof RegistryError);
      assert.equal(e.code, status.PERMISSION_DENIED);
      assert.match(e.message, pattern);
      return true;
    });
  denied(() => access.requireService(caller, 'billing'), /may not act for service billing$/);
  denied(
    () => access.requireClaims(caller, 'billing-eu', ['acme.orders.v1.Orders']),
    /may not claim gRPC service acme\.orders\.v1\.Orders for service billing-eu/,
  );
  denied(() => access.requireRead(caller), /has no read grant/);
  assert.throws(
    () => access.identify(callWithToken('wrong')),
    (e: unknown) => e instanceof RegistryError && e.code === status.UNAUTHENTICATED,
  );
});

test('addresses: loopback and private by default; never link-local, multicast or unspecified', () => {
  const defaults = new AddressPolicy();
  for (const ok of [
    '127.0.0.1:1',
    '10.0.0.5:9000',
    '172.31.0.1:1',
    '192.168.1.1:1',
    '[::1]:1',
    '[fd00::1]:1',
  ])
    assert.equal(defaults.refusal(ok), undefined, ok);
  for (const bad of [
    '169.254.169.254:80',
    '0.0.0.0:1',
    '224.0.0.1:1',
    '[fe80::1]:1',
    '[::]:1',
    '8.8.8.8:53',
    'localhost:1',
  ])
    assert.ok(defaults.refusal(bad), bad);
  const wide = new AddressPolicy({
    allowedNetworks: ['0.0.0.0/0', '::/0'],
    allowedHostnames: ['Orders.Internal'],
  });
  assert.equal(wide.refusal('8.8.8.8:53'), undefined);
  assert.equal(wide.refusal('orders.internal:80'), undefined);
  assert.match(wide.refusal('169.254.169.254:80') ?? '', /link-local/);
  assert.match(wide.refusal('0.0.0.0:80') ?? '', /unspecified/);
});

test('config: grants, tokens and networks are validated, errors name the field and file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'halyard-discovery-config-'));
  try {
    const file = join(dir, 'discovery.yaml');
    writeFileSync(
      file,
      [
        'tokens: [{ sha256: abc, identity: greeter }]',
        'grants:',
        '  greeter: { services: { Greeter: ["demo greeter"] }, write: true }',
        'allowedNetworks: ["10.0.0.0/33", "not-a-network"]',
      ].join('\n'),
    );
    await assert.rejects(loadDiscoveryConfig(['--config', file]), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, new RegExp(file.replaceAll('.', '\\.')));
      assert.match(e.message, /tokens\.0\.sha256: must be the SHA-256/);
      assert.match(e.message, /grants\.greeter/);
      assert.match(e.message, /allowedNetworks\.0: "10\.0\.0\.0\/33": the prefix length/);
      assert.match(e.message, /allowedNetworks\.1: "not-a-network" is not a network/);
      return true;
    });
    const statics = join(dir, 'static.yaml');
    writeFileSync(
      statics,
      'instances:\n  - service: metadata\n    address: "169.254.169.254:80"\n',
    );
    await assert.rejects(loadStaticDefinitions(statics, 15, new AddressPolicy()), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(
        e.message,
        /instances\[0\]\.address: 169\.254\.169\.254 is an unspecified, link-local/,
      );
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('halyard up: the greeter token is 0600 and the generated grants are a valid discovery config', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'halyard-up-registry-'));
  try {
    const { dir } = registryCredentials(dataDir);
    const tokenFile = join(dir, 'greeter.token');
    assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const token = readFileSync(tokenFile, 'utf8').trim();
    assert.deepEqual(registryCredentials(dataDir), { dir }, 'made once, then reused');
    assert.equal(readFileSync(tokenFile, 'utf8').trim(), token);
    const config = await loadDiscoveryConfig(['--config', join(dir, 'discovery.yaml')]);
    assert.ok(!readFileSync(join(dir, 'discovery.yaml'), 'utf8').includes(token));
    const access = new RegistryAccess({ tokens: config.tokens, grants: config.grants });
    const greeter = access.identify(callWithToken(token));
    access.requireClaims(greeter, 'greeter', ['demo.greeter.v1.Greeter']);
    assert.throws(() => access.requireService(greeter, 'halyard-discovery'));
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
