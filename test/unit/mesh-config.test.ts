/**
 * The mesh configuration's parser: every problem named by field path and file line,
 * host settings and secret values refused, the local mesh publishable without its host id.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../services/common/config.js';
import {
  describeChange,
  parseMeshConfig,
  withoutHostSettings,
} from '../../services/launcher/mesh-config.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LOCAL_MESH = readFileSync(path.join(ROOT, 'deploy/local/mesh.yaml'), 'utf8');

function problemsOf(text: string): string[] {
  try {
    parseMeshConfig(text, 'mesh.yaml');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.file, 'mesh.yaml');
    return [...error.problems];
  }
  assert.fail('the config was accepted');
}

test('a valid mesh config is typed, with the rollout defaults and pinned versions', () => {
  const config = parseMeshConfig(
    'components:\n  greeter:\n    command: node\n    version: "1.2"\n    instances: 2\n',
    'mesh.yaml',
  );
  assert.deepEqual(config.rollout, { healthySeconds: 5, stepTimeoutSeconds: 120 });
  assert.equal(config.components.greeter?.version, '1.2');
  assert.equal(config.components.greeter?.instances, 2);
  assert.equal(config.recovery, undefined);
});

test('every problem is reported at once, each with its field path and file line', () => {
  const problems = problemsOf(
    [
      'rollout: { healthySeconds: -1 }', // 1
      'components:', // 2
      '  greeter:', // 3
      '    command: node', // 4
      '    instances: 1000', // 5
      '    versoin: "2"', // 6
      '    dependsOn: [cache, nope]', // 7
      '  cache:', // 8
      '    args: [--fast]', // 9
    ].join('\n'),
  );
  assert.deepEqual(problems.sort(), [
    'components.cache.command (mesh.yaml:8): Invalid input: expected string, received undefined',
    'components.greeter (mesh.yaml:6): Unrecognized key: "versoin"',
    'components.greeter.dependsOn.1 (mesh.yaml:7): no component "nope"',
    'components.greeter.instances (mesh.yaml:5): Too big: expected number to be <=256',
    'rollout.healthySeconds (mesh.yaml:1): Too small: expected number to be >=0',
  ]);
});

test('broken YAML says where', () => {
  const [problem] = problemsOf('components:\n  greeter: [\n');
  assert.match(problem!, /^line \d+, column \d+: /);
});

test("a host's own settings are refused, with where to set them instead", () => {
  const problems = problemsOf(
    'hostId: h1\nbus: { servers: [nats://a:4222] }\ncomponents:\n  greeter: { command: node }\n',
  );
  assert.equal(problems.length, 2);
  assert.match(problems[0]!, /^hostId \(mesh\.yaml:1\): a setting of one host: set it on the host/);
  assert.match(problems[1]!, /^bus \(mesh\.yaml:2\): a setting of one host/);
});

test('secret values are refused; files that hold them are named instead', () => {
  const problems = problemsOf(
    [
      'components:',
      '  greeter:',
      '    command: node',
      '    env:',
      '      HALYARD_GATEWAY_JWT_SECRET: s3cr3t',
      '      DB_PASSWORD: hunter2',
      '      GITHUB_TOKEN: ghp_x',
      '      TLS_KEY: "-----BEGIN PRIVATE KEY-----\\nMIIE"',
      '      HALYARD_GATEWAY_JWT_SECRET_FILE: /etc/halyard/jwt.key',
      '      DB_PASSWORD_FILE: /etc/halyard/db.password',
      '      LOG_LEVEL: debug',
    ].join('\n'),
  );
  assert.deepEqual(
    problems.map((p) => p.slice(0, p.indexOf(':', p.indexOf(')')))),
    [
      'components.greeter.env.HALYARD_GATEWAY_JWT_SECRET (mesh.yaml:5)',
      'components.greeter.env.DB_PASSWORD (mesh.yaml:6)',
      'components.greeter.env.GITHUB_TOKEN (mesh.yaml:7)',
      'components.greeter.env.TLS_KEY (mesh.yaml:8)',
    ],
  );
  assert.match(problems[0]!, /HALYARD_GATEWAY_JWT_SECRET_FILE/);
  assert.match(problems[3]!, /private key/);
});

test('the local mesh is a mesh config once its host id is taken out', () => {
  assert.match(problemsOf(LOCAL_MESH).join('\n'), /^hostId \(mesh\.yaml:\d+\)/);
  const shared = withoutHostSettings(LOCAL_MESH);
  const config = parseMeshConfig(shared, 'deploy/local/mesh.yaml');
  assert.deepEqual(Object.keys(config.components).sort(), [
    'cache',
    'discovery',
    'gateway',
    'greeter',
  ]);
  assert.equal(config.recovery, 'adopt');
  assert.match(shared, /^# The local mesh/);
});

test('the summary of a version says what changed, structurally', () => {
  const parse = (text: string) => parseMeshConfig(text, 'mesh.yaml');
  const v1 = parse(
    [
      'components:',
      '  greeter: { command: node, version: "1", env: { A: "1", B: "2" } }',
      '  cache: { command: cache, instances: 1 }',
      '  old: { command: old }',
    ].join('\n'),
  );
  assert.equal(describeChange(undefined, v1), 'first version: 3 components (greeter, cache, old)');
  const v2 = parse(
    [
      '# a comment',
      'recovery: adopt',
      'components:',
      '  greeter: { command: node, version: "2", env: { A: "1", B: "3", C: "4" }, args: [-v] }',
      '  cache: { command: cache, instances: 2, hosts: [h1, h2], drainSeconds: 3 }',
      '  new: { command: new }',
    ].join('\n'),
  );
  assert.equal(
    describeChange(v1, v2),
    'old: removed; greeter: version 1 → 2, args changed, env B,C changed; ' +
      'cache: instances 1 → 2, hosts every host → h1,h2, drainSeconds changed; new: added (1 instance); ' +
      'recovery (host default) → adopt',
  );
  assert.equal(describeChange(v2, v2), 'no change to what runs (comments or layout only)');
});
