import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { z } from 'zod';
import { ConfigError, loadYamlConfig } from '../../services/common/config.js';

const schema = z
  .object({ listen: z.object({ port: z.number().int().min(1).max(65535) }) })
  .strict();

async function file(text: string): Promise<string> {
  const path = join(await mkdtemp(join(tmpdir(), 'halyard-config-')), 'c.yaml');
  await writeFile(path, text);
  return path;
}

test('a valid file is parsed and typed', async () => {
  assert.deepEqual(await loadYamlConfig(schema, await file('listen:\n  port: 8443\n')), {
    listen: { port: 8443 },
  });
});

test('an invalid field is named with its path and the file', async () => {
  const path = await file('listen:\n  port: 70000\n');
  await assert.rejects(
    loadYamlConfig(schema, path),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.file === path &&
      /listen\.port: Too big: expected number to be <=65535/.test(error.message),
  );
});

test('broken YAML says where', async () => {
  await assert.rejects(loadYamlConfig(schema, await file('listen: [\n')), /line \d+, column \d+/);
});

test('a missing file is a config error, not a crash', async () => {
  await assert.rejects(
    loadYamlConfig(schema, '/nonexistent/halyard.yaml'),
    /\/nonexistent\/halyard\.yaml: cannot read/,
  );
});
