/** The gateway's `workers` setting: file, environment and flag, `auto` and its bounds. */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { loadGatewayConfig } from '../../services/gateway/config.js';
import { workerCount } from '../../services/gateway/workers.js';

const BASE = ['--id', 'gw-1', '--nats', 'nats://127.0.0.1:4222'];
const saved = process.env.HALYARD_GATEWAY_WORKERS;
beforeEach(() => {
  delete process.env.HALYARD_GATEWAY_WORKERS;
});
afterEach(() => {
  if (saved === undefined) delete process.env.HALYARD_GATEWAY_WORKERS;
  else process.env.HALYARD_GATEWAY_WORKERS = saved;
});

test('one worker unless set: a single process', async () => {
  const config = await loadGatewayConfig(BASE);
  assert.equal(config.workers, 1);
  assert.equal(workerCount(config.workers), 1);
});

test('auto is one worker per available core', async () => {
  const config = await loadGatewayConfig([...BASE, '--workers', 'auto']);
  assert.equal(config.workers, 'auto');
  assert.equal(workerCount(config.workers), availableParallelism());
});

test('a number from the file, overridden by the environment, overridden by the flag', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'halyard-workers-')), 'gateway.yaml');
  writeFileSync(file, 'workers: 3\n');
  assert.equal((await loadGatewayConfig([...BASE, '-c', file])).workers, 3);
  process.env.HALYARD_GATEWAY_WORKERS = '4';
  assert.equal((await loadGatewayConfig([...BASE, '-c', file])).workers, 4);
  assert.equal((await loadGatewayConfig([...BASE, '-c', file, '--workers', '5'])).workers, 5);
});

test('anything but a positive whole number or auto is refused, naming where it came from', async () => {
  await assert.rejects(
    loadGatewayConfig([...BASE, '--workers', '0']),
    /workers \(from --workers\)/,
  );
  await assert.rejects(
    loadGatewayConfig([...BASE, '--workers', '1.5']),
    /workers \(from --workers\)/,
  );
  process.env.HALYARD_GATEWAY_WORKERS = 'all';
  await assert.rejects(loadGatewayConfig(BASE), /workers \(from HALYARD_GATEWAY_WORKERS\)/);
});
