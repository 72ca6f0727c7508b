import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const DIR = fileURLToPath(new URL('../../deploy/systemd/', import.meta.url));
const UNITS = ['halyard-nats.service', 'halyard-launcher.service'];

/** `Key=value` lines of one section. */
function section(unit: string, name: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  let current = '';
  for (const line of unit.split('\n')) {
    const header = /^\[(.+)\]$/.exec(line.trim());
    if (header) current = header[1]!;
    const entry = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (entry && current === name) keys.set(entry[1]!, [...(keys.get(entry[1]!) ?? []), entry[2]!]);
  }
  return keys;
}

for (const name of UNITS) {
  test(`${name}: restarted always, as its own user, hardened, no secret on its command line`, () => {
    const service = section(readFileSync(path.join(DIR, name), 'utf8'), 'Service');
    const one = (key: string) => service.get(key)?.at(-1);
    assert.equal(one('Restart'), 'always');
    assert.equal(one('User'), 'halyard');
    for (const [key, value] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['CapabilityBoundingSet', ''],
      ['UMask', '0077'],
    ]) {
      assert.equal(one(key!), value, `${key}=${value}`);
    }
    assert.doesNotMatch(one('ExecStart') ?? '', /pass|token|secret|seed|--user/i);
  });
}

test('the launcher unit leaves its children running when the launcher dies, to be adopted', () => {
  const service = section(
    readFileSync(path.join(DIR, 'halyard-launcher.service'), 'utf8'),
    'Service',
  );
  assert.deepEqual(service.get('KillMode'), ['process']);
});

test('systemd-analyze verify accepts both units', (t) => {
  if (spawnSync('systemd-analyze', ['--version']).status !== 0) {
    t.skip('systemd-analyze is not installed here');
    return;
  }
  // verify also checks that each ExecStart binary exists: point them at this machine's.
  const natsServer =
    process.env.NATS_SERVER_BIN ??
    execFileSync('bash', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).trim();
  const dir = mkdtempSync(path.join(tmpdir(), 'halyard-units-'));
  for (const name of UNITS) {
    const unit = readFileSync(path.join(DIR, name), 'utf8')
      .replaceAll('/usr/local/bin/nats-server', natsServer)
      .replaceAll('/usr/bin/node', process.execPath);
    writeFileSync(path.join(dir, name), unit);
  }
  const result = spawnSync('systemd-analyze', ['verify', ...UNITS.map((u) => path.join(dir, u))], {
    encoding: 'utf8',
  });
  assert.equal(result.status, 0, result.stderr);
  assert.equal(result.stderr.trim(), '', 'no warning either');
});
