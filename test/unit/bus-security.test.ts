import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import {
  BusConfigError,
  readSecretFile,
  rolePermissions,
  rolePublishes,
  Subjects,
} from '../../bus/index.js';
import { busOptions, busSecurityFromEnv, busSettings } from '../../services/common/bus-settings.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'halyard-secret-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function file(name: string, mode: number): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, 'SUAEXAMPLE\n', { mode });
  fs.chmodSync(f, mode);
  return f;
}

describe('secret files', () => {
  test('an owner-only file is read', () => {
    assert.equal(readSecretFile(file('ok.seed', 0o600), 'seed').toString('utf8'), 'SUAEXAMPLE\n');
  });

  test('a file others may read is refused, naming the file and the fix', () => {
    const loose = file('loose.seed', 0o644);
    assert.throws(
      () => readSecretFile(loose, 'NATS nkey seed file'),
      (e: Error) =>
        e instanceof BusConfigError && e.message.includes(loose) && /chmod 600/.test(e.message),
    );
  });

  test('a symlink is refused, even to a good file', () => {
    const link = path.join(dir, 'link.seed');
    fs.symlinkSync(file('target.seed', 0o600), link);
    assert.throws(() => readSecretFile(link, 'seed'), /is a symlink/);
  });

  test('a missing file is named', () => {
    assert.throws(() => readSecretFile(path.join(dir, 'none'), 'seed'), /none: ENOENT/);
  });
});

describe('bus settings', () => {
  test('every variable has its field, and a role names its files in the roles directory', () => {
    const settings = busSecurityFromEnv({
      HALYARD_NATS_ROLES: '/etc/halyard/bus',
      HALYARD_NATS_ROLE: 'gateway',
    });
    const options = busOptions({ ...settings, servers: ['nats://10.0.0.1:4222'] }, 'gw');
    assert.deepEqual(options.tls, {
      caFile: '/etc/halyard/bus/gateway/ca.crt',
      certFile: '/etc/halyard/bus/gateway/client.crt',
      keyFile: '/etc/halyard/bus/gateway/client.key',
    });
    assert.deepEqual(options.auth, { nkeyFile: '/etc/halyard/bus/gateway/nkey.seed' });
  });

  test('a file named on its own wins over the role’s', () => {
    const settings = busSettings.parse({
      roles: '/r',
      role: 'cache',
      creds: '/x/cache.creds',
      ca: '/x/ca.pem',
    });
    const options = busOptions(settings, 'cache');
    assert.deepEqual(options.auth, { credsFile: '/x/cache.creds' });
    assert.equal(options.tls?.caFile, '/x/ca.pem');
  });

  test('an open bus has neither TLS nor a credential; a role alone changes nothing', () => {
    const options = busOptions(busSettings.parse({ role: 'gateway' }), 'gw');
    assert.equal(options.tls, undefined);
    assert.equal(options.auth, undefined);
  });

  test('two credentials, half a user or half a certificate are refused', () => {
    assert.throws(() => busSettings.parse({ nkey: '/a', creds: '/b' }), /one bus credential/);
    assert.throws(() => busSettings.parse({ user: 'ops' }), /password file/);
    assert.throws(() => busSettings.parse({ cert: '/c.pem' }), /certificate and its key/);
    assert.throws(() => busSettings.parse({ roles: '/r' }), /name the role/);
  });
});

describe('role permissions', () => {
  const all = (role: Parameters<typeof rolePermissions>[0], host?: string) => {
    const p = rolePermissions(role, host);
    return [...p.publish.allow, ...p.subscribe.allow];
  };

  test('only admin may manage streams: no other role has the whole JetStream API', () => {
    for (const role of ['gateway', 'discovery', 'cache', 'operator', 'extender'] as const) {
      assert.ok(
        !all(role).some((s) => /^\$JS\.API\.(>|STREAM\.(CREATE|UPDATE|DELETE|PURGE))/.test(s)),
        role,
      );
    }
    assert.ok(
      !all('launcher', 'host-a').some((s) =>
        /^\$JS\.API\.(>|STREAM\.(CREATE|UPDATE|DELETE|PURGE))/.test(s),
      ),
    );
  });

  test('a launcher publishes and answers for its own host only', () => {
    const p = rolePermissions('launcher', 'host-a');
    assert.ok(p.publish.allow.includes('halyard.events.lifecycle.host-a.>'));
    assert.ok(!p.publish.allow.some((s) => s.startsWith('halyard.events.lifecycle.>')));
    assert.deepEqual(
      p.subscribe.allow.filter((s) => s.startsWith('halyard.ctl')),
      [`${Subjects.controlOf('launcher')}.host-a.*`, `${Subjects.controlOf('launcher')}.all.*`],
    );
    assert.equal(p.allow_responses, true);
    assert.throws(() => rolePermissions('launcher'), /one host/);
  });

  test('a launcher reads and writes its own host’s children, no other host’s', () => {
    const launchers = (s: string) => s.includes('halyard-launchers');
    assert.deepEqual(rolePermissions('launcher', 'host-a').publish.allow.filter(launchers), [
      '$JS.API.STREAM.INFO.KV_halyard-launchers',
      '$JS.API.DIRECT.GET.KV_halyard-launchers.$KV.halyard-launchers.host-a',
      '$KV.halyard-launchers.host-a',
    ]);
    for (const role of ['gateway', 'discovery', 'cache', 'operator', 'extender'] as const) {
      assert.ok(!rolePermissions(role).publish.allow.some(launchers), role);
    }
  });

  test('only the operator and admin send control requests', () => {
    for (const role of ['gateway', 'discovery', 'cache', 'extender'] as const) {
      assert.ok(
        !rolePermissions(role).publish.allow.some((s) => s.startsWith('halyard.ctl')),
        role,
      );
    }
    assert.ok(rolePermissions('operator').publish.allow.includes(Subjects.allControl));
  });
});

test('what a role may publish is read from its grants, wildcards included', () => {
  const info = (stream: string) => `$JS.API.STREAM.INFO.${stream}`;
  assert.equal(rolePublishes('gateway', info('KV_halyard-registry')), true);
  assert.equal(rolePublishes('gateway', info('HALYARD_EVENTS')), false);
  assert.equal(rolePublishes('operator', info('HALYARD_EVENTS')), true);
  assert.equal(
    rolePublishes('launcher-host-a', Subjects.lifecycle('host-a', 'gateway', 'started')),
    true,
  );
  assert.equal(
    rolePublishes('launcher-host-a', Subjects.lifecycle('host-b', 'gateway', 'started')),
    false,
  );
  assert.equal(rolePublishes('admin', info('anything')), true);
  assert.equal(rolePublishes('stranger', info('HALYARD_EVENTS')), undefined);
});
