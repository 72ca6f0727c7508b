/**
 * Gateway, discovery and cache settings in the launcher's and the mesh configuration:
 * checked by each component's own schema (problems named by path and line), secret
 * values refused, handed to an instance as a private file its own loader reads.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { loadCacheSettings } from '../../services/cache/config.js';
import { ConfigError } from '../../services/common/config.js';
import { loadDiscoveryConfig } from '../../services/discovery/config.js';
import { loadGatewayConfig } from '../../services/gateway/config.js';
import { settingsEnv, UNWRITTEN } from '../../services/launcher/component-settings.js';
import { describeChange, parseMeshConfig } from '../../services/launcher/mesh-config.js';

function problemsOf(text: string): string[] {
  try {
    parseMeshConfig(text, 'mesh.yaml');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return [...error.problems];
  }
  assert.fail('the config was accepted');
}

const gateway = (settings: string[]) =>
  ['components:', '  gateway:', '    command: node', '    settings:', '      kind: gateway']
    .concat(settings.map((line) => `      ${line}`))
    .join('\n');

test('a gateway setting with a typo is refused by the gateway’s schema, with path and line', () => {
  assert.deepEqual(
    problemsOf(gateway(['limits:', '    idleConectionSeconds: 30', '    windowBytes: 12'])),
    [
      'components.gateway.settings.limits.windowBytes (mesh.yaml:8): Too small: expected number to be >=65535',
      'components.gateway.settings.limits.idleConectionSeconds (mesh.yaml:7): unknown field',
    ],
  );
});

test('valid settings are accepted as written; what instances get from flags may be left out', () => {
  // The gateway's `id` is required, and given to each instance by `--id`.
  const config = parseMeshConfig(
    gateway(['limits: { maxConcurrentCalls: 500 }', 'tls: { certFile: /etc/halyard/gw.crt }']),
    'mesh.yaml',
  );
  assert.deepEqual(config.components.gateway?.settings, {
    kind: 'gateway',
    limits: { maxConcurrentCalls: 500 },
    tls: { certFile: '/etc/halyard/gw.crt' },
  });
});

test('each kind is checked by its own schema, and the kind must be one of them', () => {
  const problems = problemsOf(
    [
      'components:',
      '  discovery: { command: d, settings: { kind: discovery, leases: { defaultSecs: 5 } } }',
      '  cache: { command: c, settings: { kind: cache, trim: { intervalMs: 1 } } }',
      '  other: { command: o, settings: { kind: greeter } }',
    ].join('\n'),
  );
  assert.equal(problems.length, 3);
  assert.match(
    problems[0]!,
    /^components\.discovery\.settings\.leases\.defaultSecs \(mesh\.yaml:2\): unknown field$/,
  );
  assert.match(
    problems[1]!,
    /^components\.cache\.settings\.trim\.intervalMs \(mesh\.yaml:3\): Too small/,
  );
  assert.match(problems[2]!, /^components\.other\.settings\.kind \(mesh\.yaml:4\): Invalid option/);
});

test('secret values in settings are refused: secrets stay on the hosts', () => {
  const problems = problemsOf(
    gateway([
      'affinity:',
      '  meshSecret: 0123456789abcdef0123',
      '  jwt: { hs256Secret: 0123456789abcdef0123456789abcdef0123 }',
    ]),
  );
  assert.equal(problems.length, 2);
  assert.match(
    problems[0]!,
    /^components\.gateway\.settings\.affinity\.meshSecret \(mesh\.yaml:7\): a secret value/,
  );
  assert.match(
    problems[1]!,
    /^components\.gateway\.settings\.affinity\.jwt\.hs256Secret \(mesh\.yaml:8\): a secret value/,
  );
  // Files naming secrets are what settings hold.
  parseMeshConfig(gateway(['discovery: { addresses: [a:1], tokenFile: /etc/gw.token }']), 'm.yaml');
});

test('a change of settings is named as needing a restart', () => {
  const v1 = parseMeshConfig(gateway(['limits: { maxConcurrentCalls: 500 }']), 'mesh.yaml');
  const v2 = parseMeshConfig(gateway(['limits: { maxConcurrentCalls: 600 }']), 'mesh.yaml');
  const v3 = parseMeshConfig('components:\n  gateway: { command: node }\n', 'mesh.yaml');
  assert.equal(describeChange(v1, v2), 'gateway: settings changed (restart needed)');
  assert.equal(describeChange(v2, v3), 'gateway: settings removed (restart needed)');
  assert.equal(describeChange(v1, v1), 'no change to what runs (comments or layout only)');
});

/** Runs `body` with `name` set to `value`, then restores it. */
async function withEnv<T>(name: string, value: string, body: () => Promise<T>): Promise<T> {
  const saved = process.env[name];
  process.env[name] = value;
  try {
    return await body();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}

test('settingsEnv writes a private file named by content that the component’s loader reads', async (t) => {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'halyard-settings-test-')), 'launcher');
  t.after(() => rmSync(path.dirname(dir), { recursive: true, force: true }));
  const config = parseMeshConfig(
    [
      'components:',
      '  gw: { command: g, settings: { kind: gateway, limits: { maxConcurrentCalls: 7 } } }',
      '  disc: { command: d, settings: { kind: discovery, leases: { defaultSeconds: 9 } } }',
      '  kv: { command: c, settings: { kind: cache, namespaces: { s: { maxRecords: 5 } } } }',
      '  plain: { command: p }',
    ].join('\n'),
    'mesh.yaml',
  ).components;

  const env = settingsEnv('gw', config.gw!, dir);
  const file = env.HALYARD_GATEWAY_CONFIG!;
  assert.deepEqual(Object.keys(env), ['HALYARD_GATEWAY_CONFIG']);
  assert.equal(path.dirname(file), dir);
  assert.match(path.basename(file), /^gw-[0-9a-f]{16}\.yaml$/);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  const loaded = await withEnv('HALYARD_GATEWAY_CONFIG', file, () =>
    loadGatewayConfig(['--id', 'g-1']),
  );
  assert.equal(loaded.limits.maxConcurrentCalls, 7);

  const discovery = settingsEnv('disc', config.disc!, dir).HALYARD_DISCOVERY_CONFIG!;
  const replica = await withEnv('HALYARD_DISCOVERY_CONFIG', discovery, () =>
    loadDiscoveryConfig([]),
  );
  assert.equal(replica.leases.defaultSeconds, 9);
  const cache = settingsEnv('kv', config.kv!, dir).HALYARD_CACHE_CONFIG!;
  const kv = await withEnv('HALYARD_CACHE_CONFIG', cache, () => loadCacheSettings([]));
  assert.equal(kv.namespaces.s?.maxRecords, 5);

  // The same content is the same file, written once; other content is another file.
  const written = readFileSync(file, 'utf8');
  assert.equal(settingsEnv('gw', config.gw!, dir).HALYARD_GATEWAY_CONFIG, file);
  assert.equal(readFileSync(file, 'utf8'), written);
  const changed = { settings: { kind: 'gateway' as const, limits: { maxConcurrentCalls: 8 } } };
  assert.notEqual(settingsEnv('gw', changed, dir).HALYARD_GATEWAY_CONFIG, file);
  assert.deepEqual(settingsEnv('plain', config.plain!, dir), {});
});

test('settingsEnv refuses a directory others may write to, and says so', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'halyard-settings-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o777);
  const errors: Error[] = [];
  const settings = { settings: { kind: 'cache' as const } };
  const env = settingsEnv('kv', settings, dir, (error) => errors.push(error));
  assert.equal(errors.length, 1);
  assert.match(errors[0]!.message, /is not a directory of this user's alone/);
  // Not a file in that directory (anyone could have put one there): no file at all.
  assert.deepEqual(env, { HALYARD_CACHE_CONFIG: UNWRITTEN });
  assert.deepEqual(readdirSync(dir), []);
});
