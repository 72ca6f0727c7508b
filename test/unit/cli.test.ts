/**
 * The CLI's small parsers and the local mesh's config: durations, ages, where the bus
 * is found, and the instance counts `up` waits for.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatAge, parseDuration, resolveServers } from '../../services/cli/connect.js';
import { expectedInstances } from '../../services/cli/mesh.js';
import { forHost, loadLauncherConfig } from '../../services/launcher/config.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MESH = path.join(ROOT, 'deploy/local/mesh.yaml');

test('durations: --since values', () => {
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('10m'), 600_000);
  assert.equal(parseDuration('2h'), 7_200_000);
  assert.equal(parseDuration('1d'), 86_400_000);
  assert.equal(parseDuration('10'), undefined);
  assert.equal(parseDuration('ten minutes'), undefined);
});

test('ages are short and readable', () => {
  assert.equal(formatAge(1234), '1.2s');
  assert.equal(formatAge(42_000), '42s');
  assert.equal(formatAge(184_000), '3m04s');
  assert.equal(formatAge(7_500_000), '2h05m');
  assert.equal(formatAge(-5), '0.0s');
});

test('servers: --servers, then HALYARD_NATS, then the default', () => {
  const saved = process.env.HALYARD_NATS;
  try {
    process.env.HALYARD_NATS = 'nats://a:4222, nats://b:4222';
    assert.deepEqual(resolveServers({ servers: 'nats://x:1' }).servers, ['nats://x:1']);
    assert.deepEqual(resolveServers({}), {
      servers: ['nats://a:4222', 'nats://b:4222'],
      from: 'HALYARD_NATS',
    });
  } finally {
    if (saved === undefined) delete process.env.HALYARD_NATS;
    else process.env.HALYARD_NATS = saved;
  }
});

test('deploy/local/mesh.yaml is a valid launcher config; up waits for its 8 processes', async () => {
  const config = await loadLauncherConfig(MESH);
  const order = [...forHost(config, 'local').keys()];
  assert.ok(order.indexOf('discovery') < order.indexOf('gateway'));
  assert.ok(order.indexOf('discovery') < order.indexOf('greeter'));
  const counts = await expectedInstances(MESH);
  assert.deepEqual(Object.fromEntries(counts), { discovery: 2, gateway: 2, cache: 1, greeter: 3 });
  for (const [name, c] of Object.entries(config.components)) {
    assert.equal(c.instances, counts.get(name), name);
    assert.ok(c.readiness, `${name} has a readiness probe`);
  }
});
