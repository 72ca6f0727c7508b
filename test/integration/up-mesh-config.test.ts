/**
 * `halyard up` publishes its mesh file as the mesh configuration: version 1 on an empty
 * bus, nothing when the latest version is the file, the next version when it differs;
 * host settings never reach the bus.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Bus } from '../../bus/index.js';
import { publishMeshFile } from '../../services/cli/up/mesh-config.js';
import { parseMeshConfig } from '../../services/launcher/mesh-config.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MESH_FILE = path.join(ROOT, 'deploy/local/mesh.yaml');

let cluster: NatsCluster;
let bus: Bus;
const logs = captureLogs('info');

before(async () => {
  ({ cluster, bus } = await startBusCluster('up-mesh-config-test', logs.logger));
});
after(async () => {
  await bus?.close();
  await cluster?.close();
});

test('deploy/local/mesh.yaml becomes version 1, once; a changed copy becomes version 2', async () => {
  assert.deepEqual(await publishMeshFile(bus, MESH_FILE, logs.logger), {
    version: 1,
    published: true,
  });
  const v1 = (await bus.meshConfig().get(1))!;
  assert.doesNotMatch(v1.content, /^hostId:/m, 'host settings stay on the host');
  assert.equal(parseMeshConfig(v1.content, 'v1').components.greeter?.version, '1');
  assert.match(v1.author, /^halyard up \(/);

  assert.deepEqual(await publishMeshFile(bus, MESH_FILE, logs.logger), {
    version: 1,
    published: false,
  });

  const copy = path.join(await mkdtemp(path.join(tmpdir(), 'halyard-up-mesh-')), 'mesh.yaml');
  await writeFile(
    copy,
    (await readFile(MESH_FILE, 'utf8')).replace('version: "1"', 'version: "2"'),
  );
  assert.deepEqual(await publishMeshFile(bus, copy, logs.logger), { version: 2, published: true });
  const v2 = (await bus.meshConfig().latest())!;
  assert.equal(v2.basedOn, 1);
  assert.equal(parseMeshConfig(v2.content, 'v2').components.greeter?.version, '2');
  assert.equal(logs.withId('HALX0009I').length, 2);
});
