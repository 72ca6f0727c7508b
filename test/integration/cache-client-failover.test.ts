import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { type CacheClient, createCacheClient } from '../../services/cache/client.js';
import { freePort } from '../../services/launcher/instance.js';
import { tokensFor } from '../support/cache.js';
import { type ComponentProcess, spawnComponent } from '../support/component-process.js';
import { NatsCluster } from '../support/nats-cluster.js';

const CALLS = 1200;
const IN_FLIGHT = 8;
const KILL_AFTER = 200;

interface CacheProcess extends ComponentProcess {
  readonly address: string;
}

async function spawnCache(
  id: string,
  servers: string[],
  configFile: string,
): Promise<CacheProcess> {
  const [port, admin] = [await freePort(), await freePort()];
  const cache = await spawnComponent(
    'services/cache/main.ts',
    [
      ...['--config', configFile, '--id', id, '--grpc-port', String(port)],
      ...['--admin-port', String(admin), '--nats', servers.join(',')],
    ],
    admin,
  );
  return { ...cache, address: `127.0.0.1:${port}` };
}

describe('a cache client over two replicas, one killed under load', () => {
  let cluster: NatsCluster;
  const replicas: CacheProcess[] = [];
  let client: CacheClient;

  before(async () => {
    cluster = await NatsCluster.start();
    const dir = await mkdtemp(path.join(tmpdir(), 'halyard-cache-ha-'));
    const configFile = path.join(dir, 'cache.yaml');
    await writeFile(configFile, stringify({ tokens: tokensFor(['sessions']) }));
    for (const id of ['cache-a', 'cache-b']) {
      replicas.push(await spawnCache(id, cluster.servers, configFile));
    }
    client = createCacheClient({
      address: replicas.map((r) => r.address),
      token: 'token-sessions',
    });
  });
  after(async () => {
    client?.close();
    for (const r of replicas) r.child.kill('SIGKILL');
    await cluster?.close();
  });

  test('reads and writes started after the replica died all succeed, and every acknowledged write is there', async () => {
    let started = 0;
    let inFlight = 0;
    let diedAt = Number.POSITIVE_INFINITY;
    let inFlightAtDeath = 0;
    const acked: string[] = [];
    const failures: Array<{ startedAt: number; message: string }> = [];
    void replicas[0]!.exited.then(() => {
      diedAt = Date.now();
      inFlightAtDeath = inFlight;
    });
    const deadline = Date.now() + 60_000;
    const worker = async () => {
      while (started < CALLS && Date.now() < deadline) {
        const n = ++started;
        if (n === KILL_AFTER) replicas[0]!.child.kill('SIGKILL');
        const key = `k-${n}`;
        const startedAt = Date.now();
        inFlight++;
        try {
          await client.put(key, new TextEncoder().encode(String(n)));
          acked.push(key);
          await client.get(key);
        } catch (error) {
          failures.push({ startedAt, message: (error as Error).message });
        } finally {
          inFlight--;
        }
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));

    assert.ok(Number.isFinite(diedAt), 'the replica died');
    assert.equal(started, CALLS, 'every call was made within the time bound');
    assert.deepEqual(
      failures.filter((f) => f.startedAt > diedAt).map((f) => f.message),
      [],
      'nothing started after the replica died failed',
    );
    assert.ok(failures.length <= inFlightAtDeath, `${failures.length} failures`);
    for (const key of acked) assert.ok(await client.get(key), `${key} was acknowledged`);
  });
});
