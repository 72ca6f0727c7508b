/**
 * Launchers following the mesh configuration on the bus: two launchers (two hosts on
 * loopback) each run two demo greeters behind a gateway and a discovery replica. A new
 * greeter version rolls host by host, one instance at a time, with no failed call
 * through the gateway; a version whose greeter exits at once halts after one instance
 * and every greeter keeps running the previous version; v2's content published again
 * applies at once; a launcher that was down meanwhile catches up when it starts.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { stringify } from 'yaml';
import {
  type Bus,
  type MeshConfigStore,
  type Rollout,
  RolloutsBucket,
  type ServiceInstance,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { tokenDigest } from '../../services/common/callers.js';
import { serviceDefinition } from '../../services/common/grpc.js';
import type { DiscoveryReplica } from '../../services/discovery/replica.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { Launcher } from '../../services/launcher/launcher.js';
import { parseMeshConfig } from '../../services/launcher/mesh-config.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { runCli } from '../support/cli.js';
import { startReplica as startDiscovery, TESTER_ACCESS, tokenFile } from '../support/discovery.js';
import { startGateway } from '../support/gateway.js';
import { controlAccess, writeConfig } from '../support/launcher.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const HOSTS = ['mesh-a', 'mesh-b'] as const;
const GREETER = 'demo.greeter.v1.Greeter';
const GREETER_TOKEN = 'greeter-token-for-rollout-tests';
const { InstanceStatus } = halyard.discovery.v1;
const HostState = halyard.launcher.v1.HostRollout.State;
const RolloutState = halyard.launcher.v1.Rollout.State;
const Greeter = grpc.makeGenericClientConstructor(serviceDefinition(GREETER), 'Greeter');

describe('launchers following the mesh configuration on the bus', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let store: MeshConfigStore;
  let discovery: DiscoveryReplica;
  let gateway: Gateway;
  const launchers = new Map<string, Launcher>();
  const logs = captureLogs('warn');
  let greeterToken: string;

  /** The mesh configuration with the greeter at `version`; `command` replaces its start. */
  const mesh = (version: string, broken = false) =>
    stringify({
      rollout: { healthySeconds: 1, stepTimeoutSeconds: 60 },
      components: {
        greeter: {
          command: process.execPath,
          args: broken ? ['-e', 'process.exit(3)'] : ['--import', 'tsx', 'services/demo/main.ts'],
          cwd: ROOT,
          version,
          instances: 2,
          port: { env: 'PORT' },
          readiness: { grpc: {} },
          readyTimeoutSeconds: 60,
          drainSeconds: 0,
          stop: { signal: 'SIGTERM', timeoutSeconds: 10 },
          restart: { intervals: [1], minUptimeSeconds: 30 },
          env: {
            HALYARD_NATS: cluster.servers.join(','),
            HALYARD_REGISTRY_TOKEN_FILE: greeterToken,
            DEMO_DRAIN_MS: '1000',
            DEMO_LEASE_SECONDS: '5',
            HALYARD_LOG_LEVEL: 'warn',
          },
        },
      },
    });

  const publish = async (content: string) => {
    const latest = await store.latest();
    return (
      await store.publish({
        basedOn: latest?.version ?? 0,
        content,
        author: 'rollout-test',
        summary: 'test',
      })
    ).version;
  };

  const startHost = async (hostId: string) => {
    const configFile = await writeConfig({ hostId, control: controlAccess() });
    const launcher = await Launcher.start({
      configFile,
      bus,
      logger: logs.logger,
      mesh: {
        versions: store,
        parse: parseMeshConfig,
        rollouts: await bus.store(RolloutsBucket),
        pollMs: 200,
      },
    });
    launchers.set(hostId, launcher);
  };

  const record = async (version: number): Promise<Rollout | undefined> =>
    (await (await bus.store(RolloutsBucket)).get(String(version)))?.value;

  const hostState = async (version: number, hostId: string) =>
    (await record(version))?.hosts.find((h) => h.hostId === hostId);

  const allApplied = async (version: number, hosts: readonly string[] = HOSTS) => {
    const r = await record(version);
    return hosts.every((h) => r?.hosts.find((e) => e.hostId === h)?.state === HostState.APPLIED);
  };

  const greeters = async (): Promise<ServiceInstance[]> => {
    const { entries } = await bus.snapshot('registrations');
    return [...entries.values()].filter((i) => i.serviceId === 'greeter');
  };

  /** Every host's two greeters UP in the registry, registered with `version`. */
  const greetersAt = async (version: string) => {
    const up = (await greeters()).filter((i) => i.status === InstanceStatus.UP);
    return (
      up.length === 4 &&
      HOSTS.every((h) => up.filter((i) => i.hostId === h).length === 2) &&
      up.every((i) => i.version === version)
    );
  };

  const greeterPids = (hostId: string) =>
    launchers
      .get(hostId)!
      .display()
      .processes.map((p) => p.pid);

  const cli = (...args: string[]) => runCli(cluster, args, { timeoutMs: 60_000 });

  before(async () => {
    ({ cluster, bus } = await startBusCluster('mesh-rollout-test', logs.logger));
    store = bus.meshConfig();
    greeterToken = tokenFile(GREETER_TOKEN);
    discovery = await startDiscovery(cluster, 'discovery-1', {
      access: {
        tokens: [
          ...TESTER_ACCESS.tokens,
          { sha256: tokenDigest(GREETER_TOKEN), identity: 'greeter' },
        ],
        grants: {
          ...TESTER_ACCESS.grants,
          greeter: { services: { greeter: [GREETER] }, read: false },
        },
      },
    });
    gateway = await startGateway(bus, cluster.servers, logs.logger, { id: 'gw-rollout' });
  });
  after(async () => {
    for (const launcher of launchers.values()) await launcher.shutdown();
    await gateway?.stop();
    await discovery?.stop();
    await bus?.close();
    await cluster?.close();
  });

  test('a new greeter version rolls host by host, one instance at a time, with no failed call', async () => {
    assert.equal(await publish(mesh('1')), 1);
    for (const host of HOSTS) await startHost(host);
    await until('v1 applied on both hosts', () => allApplied(1));
    await until('four greeters of version 1 UP', () => greetersAt('1'), 60_000);

    const client = new Greeter(`127.0.0.1:${gateway.port}`, grpc.credentials.createInsecure());
    const stub = client as unknown as {
      sayHello(
        request: object,
        options: grpc.CallOptions,
        done: (error: grpc.ServiceError | null) => void,
      ): void;
    };
    const calls = { ok: 0, failed: [] as string[] };
    let calling = true;
    const load = (async () => {
      while (calling) {
        await new Promise<void>((resolve) =>
          stub.sayHello({ name: 'rollout' }, { deadline: Date.now() + 10_000 }, (error) => {
            if (error) calls.failed.push(`${error.code} ${error.details}`);
            else calls.ok++;
            resolve();
          }),
        );
      }
    })();

    const steps: string[] = [];
    const watcher = setInterval(async () => {
      for (const h of (await record(2))?.hosts ?? []) {
        const step = `${h.hostId} ${h.reason}`;
        if (h.state === HostState.ROLLING && steps.at(-1) !== step) steps.push(step);
      }
    }, 100);
    assert.equal(await publish(mesh('2')), 2);
    await until('v2 applied on both hosts', () => allApplied(2), 90_000);
    clearInterval(watcher);
    await until('four greeters of version 2 UP', () => greetersAt('2'), 30_000);
    calling = false;
    await load;
    client.close();

    assert.deepEqual(calls.failed, [], 'no call failed through the gateway');
    assert.ok(calls.ok > 20, `calls went through during the rollout (${calls.ok})`);
    // Host by host in id order: mesh-a's steps all come before mesh-b's.
    const hostsInOrder = steps.map((s) => s.split(' ')[0]);
    assert.deepEqual([...new Set(hostsInOrder)], ['mesh-a', 'mesh-b'], steps.join('; '));
    assert.ok(
      hostsInOrder.lastIndexOf('mesh-a') < hostsInOrder.indexOf('mesh-b'),
      steps.join('; '),
    );
  });

  test('a greeter that exits at once halts the rollout after one instance; the others keep v2', async () => {
    const before = new Map(HOSTS.map((h) => [h, greeterPids(h)]));
    assert.equal(await publish(mesh('3', true)), 3);
    await until(
      'the rollout of v3 halted',
      async () => (await record(3))?.state === RolloutState.HALTED,
      60_000,
    );
    const halted = (await record(3))!;
    assert.match(
      halted.reason,
      /on host mesh-a: greeter#1 ended before it was ready .*code 3.*runs version 2 again/,
    );
    assert.equal((await hostState(3, 'mesh-a'))?.state, HostState.FAILED);
    // mesh-b waited for mesh-a's turn, then says it waits because the rollout halted.
    const b = await until('mesh-b waits for the halted rollout', async () => {
      const entry = await hostState(3, 'mesh-b');
      return entry?.reason.startsWith('rollout halted') && entry;
    });
    assert.equal(b.state, HostState.WAITING);
    assert.match(b.reason, /rollout halted on host mesh-a: greeter#1/);
    // mesh-a's first greeter went back to version 2; nothing else was touched.
    await until('four greeters of version 2 UP again', () => greetersAt('2'), 60_000);
    assert.equal(greeterPids('mesh-a')[1], before.get('mesh-a')![1]);
    assert.deepEqual(greeterPids('mesh-b'), before.get('mesh-b'));

    const status = await cli('rollout', 'status');
    assert.equal(status.code, 1, status.stderr);
    assert.match(status.stdout, /ROLLOUT of version 3: halted \(on host mesh-a: greeter#1/);
    assert.match(status.stdout, /mesh-b\s+waiting/);
  });

  test("v2's content again applies at once; a launcher that was down catches up when it starts", async () => {
    const aPids = greeterPids('mesh-a');
    await launchers.get('mesh-b')!.shutdown();
    launchers.delete('mesh-b');
    const rollback = await publish(mesh('2'));
    assert.equal(rollback, 4);
    await until('v4 applied on mesh-a', () => allApplied(4, ['mesh-a']));
    assert.deepEqual(greeterPids('mesh-a'), aPids, "mesh-a already ran v2's processes");

    const lagging = await cli('status', '--json');
    const config = (
      JSON.parse(lagging.stdout) as { config: { hosts: Array<Record<string, unknown>> } }
    ).config;
    const b = config.hosts.find((h) => h.hostId === 'mesh-b')!;
    assert.equal(b.lagging, true);
    assert.equal(b.applied, 2);

    await startHost('mesh-b');
    assert.equal((await hostState(4, 'mesh-b'))?.state, HostState.APPLIED);
    await until('four greeters of version 2 UP', () => greetersAt('2'), 60_000);
  });
});
