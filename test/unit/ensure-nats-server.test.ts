import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { atLeast } from '../../bus/bus.js';

const SCRIPT = 'deploy/nats/ensure-nats-server.sh';

/** A stand-in nats-server that only answers `--version`. */
function fakeServer(version: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'halyard-fake-nats-'));
  const bin = join(dir, 'nats-server');
  writeFileSync(bin, `#!/bin/sh\necho "nats-server: v${version}"\n`);
  chmodSync(bin, 0o755);
  return bin;
}

function ensure(env: Record<string, string>) {
  const home = mkdtempSync(join(tmpdir(), 'halyard-home-'));
  return spawnSync('bash', [SCRIPT], {
    encoding: 'utf8',
    env: { PATH: '/usr/bin:/bin', HOME: home, ...env },
  });
}

test('a server older than 2.12 is refused with the version found, the minimum and why', () => {
  const run = ensure({ NATS_SERVER_BIN: fakeServer('2.9.10') });
  assert.equal(run.status, 1);
  assert.equal(run.stdout, '');
  assert.match(
    run.stderr,
    /version 2\.9\.10 is older than 2\.12\.0, which Halyard needs for per-message TTLs/,
  );
});

test('a current server is used as given', () => {
  const bin = fakeServer('2.15.2');
  const run = ensure({ NATS_SERVER_BIN: bin });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), bin);
});

test('neither a server nor Go: says exactly how to get one', () => {
  const run = ensure({});
  assert.equal(run.status, 1);
  assert.match(run.stderr, /install Go .* which builds v2\.15\.2/);
  assert.match(run.stderr, /go install github\.com\/nats-io\/nats-server\/v2@v2\.15\.2/);
});

test('server versions compare numerically, pre-releases as their release', () => {
  assert.ok(atLeast('2.15.2', '2.12.0'));
  assert.ok(atLeast('2.12.0', '2.12.0'));
  assert.ok(atLeast('2.12.0-beta.1', '2.12.0'));
  assert.ok(!atLeast('2.9.10', '2.12.0'));
  assert.ok(!atLeast('2.11.9', '2.12.0'));
  assert.ok(atLeast('3.0.0', '2.12.0'));
});
