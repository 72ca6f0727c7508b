import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, validateConfig } from '../../services/common/config.js';
import { forHost, launcherConfig } from '../../services/launcher/config.js';

const parse = (value: unknown) => validateConfig(launcherConfig, value, 'launcher.yaml');

test('defaults: one instance, the standard intervals, 90 s min uptime, SIGTERM then 20 s', () => {
  const config = parse({ hostId: 'h1', components: { gw: { command: 'gateway' } } });
  const gw = config.components.gw!;
  assert.equal(config.recovery, 'stop');
  assert.equal(gw.instances, 1);
  assert.deepEqual(gw.restart, {
    intervals: [1, 1, 1, 5, 5, 10, 20, 60, 120, 240],
    minUptimeSeconds: 90,
  });
  assert.deepEqual(gw.stop, { signal: 'SIGTERM', timeoutSeconds: 20 });
  assert.deepEqual(gw.args, []);
  assert.equal(gw.instanceEnv, 'HALYARD_INSTANCE');
});

test('every problem is listed with the file and the path of the field', () => {
  assert.throws(
    () =>
      parse({
        hostId: 'bad host',
        components: {
          a: { instances: -1, restart: { intervals: [] } },
          b: { command: 'b', stop: { signal: 'SIGBOGUS' }, readiness: { tcp: 1 } },
          c: { command: 'c', dependsOn: ['nowhere'] },
        },
      }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.file, 'launcher.yaml');
      const paths = error.problems.map((p) => p.split(':')[0]);
      assert.deepEqual(paths.sort(), [
        'components.a.command',
        'components.a.instances',
        'components.a.restart.intervals',
        'components.b.readiness',
        'components.b.stop.signal',
        'components.c.dependsOn.0',
        'hostId',
      ]);
      return true;
    },
  );
});

test('a dependency cycle is named', () => {
  assert.throws(
    () =>
      parse({
        components: {
          a: { command: 'a', dependsOn: ['b'] },
          b: { command: 'b', dependsOn: ['a'] },
        },
      }),
    /dependency cycle: a → b → a/,
  );
});

test("forHost keeps the host's components, dependencies first", () => {
  const config = parse({
    components: {
      app: { command: 'app', dependsOn: ['cache', 'discovery'] },
      discovery: { command: 'd' },
      cache: { command: 'c', hosts: ['h1'] },
      other: { command: 'o', hosts: ['h2'] },
    },
  });
  assert.deepEqual([...forHost(config, 'h1').keys()], ['cache', 'discovery', 'app']);
  assert.deepEqual([...forHost(config, 'h2').keys()], ['discovery', 'app', 'other']);
});

test('control: nobody is granted anything by default; tokens, grants and TLS are checked strictly', () => {
  assert.deepEqual(parse({ hostId: 'h1' }).control, { tokens: [], grants: {} });
  const sha256 = 'a'.repeat(64);
  const ok = parse({
    hostId: 'h1',
    control: { tokens: [{ sha256, identity: 'ops' }], grants: { ops: 'control', dash: 'read' } },
  });
  assert.deepEqual(ok.control.grants, { ops: 'control', dash: 'read' });
  assert.throws(
    () =>
      parse({
        hostId: 'h1',
        control: {
          tokens: [
            { sha256: 'not-hex', identity: 'ops' },
            { sha256, identity: 'a' },
            { sha256, identity: 'b' },
          ],
          grants: { ops: 'admin' },
          tls: { certFile: 'c', keyFile: 'k', requireClientCert: true },
          token: 'secret',
        },
      }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      const text = error.problems.join('\n');
      assert.match(text, /control\.tokens\.0\.sha256: must be the SHA-256 of the token/);
      assert.match(text, /control\.tokens: the same token digest is listed twice/);
      assert.match(text, /control\.grants\.ops/);
      assert.match(text, /control\.tls: requireClientCert needs clientCaFile/);
      assert.match(text, /control: .*token/, 'an unknown key is refused');
      assert.ok(!text.includes('secret'), 'a value is never echoed');
      return true;
    },
  );
});

test("the host's address is loopback unless given, and must be an IP address", () => {
  assert.equal(parse({ hostId: 'h1' }).address, '127.0.0.1');
  assert.equal(parse({ hostId: 'h1', address: '10.0.0.7' }).address, '10.0.0.7');
  assert.throws(
    () => parse({ hostId: 'h1', address: 'host-1.example' }),
    (error: unknown) =>
      error instanceof ConfigError && error.problems.some((p) => p.startsWith('address:')),
  );
});
