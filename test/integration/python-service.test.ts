/**
 * A service in another language: the Python example (examples/python, grpcio and
 * nats-py with code generated from the .proto files) registers through discovery's
 * Registry with its own service token, renews its lease, is called through a gateway,
 * reads events from HALYARD_EVENTS and deregisters on SIGTERM. Its venv is made from
 * PyPI when missing (examples/python/venv.sh), so the first run takes longer.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import {
  type Bus,
  type DiscoveryEvent,
  Keys,
  type KvStore,
  RegistryBucket,
  type ServiceInstance,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { tokenDigest } from '../../services/common/callers.js';
import { serviceDefinition } from '../../services/common/grpc.js';
import type { DiscoveryReplica } from '../../services/discovery/replica.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { startReplica, TESTER_ACCESS, tokenFile } from '../support/discovery.js';
import { InstanceStatus, routed, startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { lifecycleEvent } from '../support/samples.js';
import { until } from '../support/wait.js';

const DiscoveryKind = halyard.discovery.v1.DiscoveryEvent.Kind;
const GREETER = 'demo.greeter.v1.Greeter';
const INSTANCE_ID = 'greeter-py-test';
const PYTHON_TOKEN = 'python-greeter-token-for-tests';
const LEASE_SECONDS = 3;

interface HelloReply {
  message: string;
  instanceId: string;
  index: number;
}
type GreeterClient = grpc.Client & {
  sayHello(
    request: { name: string },
    callback: (e: grpc.ServiceError | null, r: HelloReply) => void,
  ): void;
  streamHellos(request: {
    name: string;
    count: number;
    intervalMs: number;
  }): grpc.ClientReadableStream<HelloReply>;
};

type LogLine = Record<string, unknown>;

describe('a Python service (examples/python) on a 3-node cluster', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let registry: KvStore<ServiceInstance>;
  let replica: DiscoveryReplica;
  let gateway: Gateway;
  let python: ChildProcess;
  let exited: Promise<number | null>;
  const lines: LogLine[] = [];
  const discoveryEvents: DiscoveryEvent[] = [];
  const withId = (msgId: string) => lines.filter((l) => l.msgId === msgId);
  const entry = () => registry.get(Keys.registry('greeter', INSTANCE_ID));

  before(async () => {
    const venv = await promisify(execFile)('bash', ['examples/python/venv.sh'], {
      timeout: 300_000,
    });
    const interpreter = venv.stdout.trim();
    ({ cluster, bus } = await startBusCluster('test-python'));
    registry = await bus.store(RegistryBucket);
    await bus.subscribe({ kind: 'discovery', from: 'all' }, ({ event }) => {
      if (event.instanceId === INSTANCE_ID) discoveryEvents.push(event);
    });
    replica = await startReplica(cluster, 'd1', {
      access: {
        tokens: [
          ...TESTER_ACCESS.tokens,
          { sha256: tokenDigest(PYTHON_TOKEN), identity: 'python-greeter' },
        ],
        grants: {
          ...TESTER_ACCESS.grants,
          'python-greeter': { services: { greeter: [GREETER] }, read: false },
        },
      },
    });
    gateway = await startGateway(bus, cluster.servers, captureLogs('warn').logger);
    python = spawn(
      interpreter,
      [
        'examples/python/greeter.py',
        '--instance-id',
        INSTANCE_ID,
        '--lease-seconds',
        String(LEASE_SECONDS),
        '--drain-seconds',
        '1',
      ],
      {
        // Discovery is found in the registry bucket, as on a real mesh.
        env: {
          ...process.env,
          HALYARD_NATS: cluster.servers.join(','),
          HALYARD_REGISTRY_TOKEN_FILE: tokenFile(PYTHON_TOKEN),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    exited = new Promise((resolve) => python.once('exit', (code) => resolve(code)));
    let buffered = '';
    python.stdout?.on('data', (chunk: Buffer) => {
      const parts = (buffered + chunk.toString()).split('\n');
      buffered = parts.pop() ?? '';
      for (const part of parts) {
        try {
          lines.push(JSON.parse(part) as LogLine);
        } catch {
          lines.push({ text: part });
        }
      }
    });
    python.stderr?.on('data', (chunk: Buffer) => lines.push({ stderr: chunk.toString() }));
    await until(
      'the Python service registered',
      () => {
        if (python.exitCode !== null) throw new Error(`python exited: ${JSON.stringify(lines)}`);
        return withId('EXPY0002I')[0];
      },
      60_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; its last lines: ${JSON.stringify(lines.slice(-10))}`);
    });
  });
  after(async () => {
    if (python?.exitCode === null) python.kill('SIGKILL');
    await gateway?.stop();
    await replica?.stop();
    await bus?.close();
    await cluster?.close();
  });

  test('registers with its own token and renews every lease/3: the entry outlives its lease', async () => {
    const first = await entry();
    assert.ok(first, 'in the registry');
    assert.equal(first.value.status, InstanceStatus.UP);
    assert.deepEqual(first.value.grpcServices, [GREETER]);
    assert.equal(withId('EXPY0002I')[0]?.renewIntervalSeconds, LEASE_SECONDS / 3);
    // Renewed at least once per interval: after two lease lengths it is still there, fresh.
    const start = first.value.renewedAtMs;
    await until(
      'two lease lengths of renewals',
      async () => {
        const now = await entry();
        assert.ok(now, `lapsed: ${JSON.stringify(lines.slice(-5))}`);
        return now.value.renewedAtMs >= start + 2 * LEASE_SECONDS * 1000 - 1000;
      },
      3 * LEASE_SECONDS * 1000,
    );
    assert.deepEqual(withId('EXPY0007W'), [], 'no failed renewal');
  });

  test('calls through the gateway are answered by the Python process', async () => {
    await routed(gateway, GREETER, INSTANCE_ID);
    const Client = grpc.makeGenericClientConstructor(serviceDefinition(GREETER), 'Greeter');
    const client = new Client(
      `127.0.0.1:${gateway.port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as GreeterClient;
    try {
      const reply = await new Promise<HelloReply>((resolve, reject) =>
        client.sayHello({ name: 'Ada' }, (e, r) => (e ? reject(e) : resolve(r))),
      );
      assert.equal(reply.message, 'Hello from Python, Ada!');
      assert.equal(reply.instanceId, INSTANCE_ID);

      const stream: HelloReply[] = [];
      await new Promise<void>((resolve, reject) => {
        const call = client.streamHellos({ name: 'Ada', count: 3, intervalMs: 10 });
        call.on('data', (m: HelloReply) => stream.push(m));
        call.on('error', reject);
        call.on('end', () => resolve());
      });
      assert.deepEqual(
        stream.map((m) => [m.index, m.instanceId]),
        [
          [0, INSTANCE_ID],
          [1, INSTANCE_ID],
          [2, INSTANCE_ID],
        ],
      );
    } finally {
      client.close();
    }
  });

  test('prints a lifecycle event it read from HALYARD_EVENTS, decoded by its Halyard-Type', async () => {
    await until('the Python service reads events', () => withId('EXPY0010I')[0]);
    const event = lifecycleEvent({ eventId: `python-test/${Date.now()}` });
    const { seq } = await bus.publisher().publish({ source: 'lifecycle', event });
    const printed = await until('the event printed', () =>
      withId('EXPY0012I').find(
        (l) => (l.event as Record<string, unknown> | undefined)?.eventId === event.eventId,
      ),
    );
    assert.equal(printed.type, 'halyard.launcher.v1.LifecycleEvent');
    assert.equal(printed.subject, 'halyard.events.lifecycle.host-a.gateway.exited');
    assert.equal(printed.seq, seq);
    const decoded = printed.event as Record<string, unknown>;
    assert.equal(decoded.kind, 'EXITED');
    assert.equal(decoded.exitCode, 137);
    assert.equal(decoded.component, 'gateway');
  });

  test('SIGTERM: DRAINING, then deregistered (gone from the registry), then exit 0', async () => {
    python.kill('SIGTERM');
    await until(
      'DRAINING in the registry',
      async () => (await entry())?.value.status === InstanceStatus.DRAINING,
      5000,
    );
    await until('gone from the registry', async () => (await entry()) === undefined, 5000);
    // Removed by its Deregister call, not by its lease lapsing.
    await until('discovery recorded the deregistration', () =>
      discoveryEvents.some((e) => e.kind === DiscoveryKind.DEREGISTERED),
    );
    assert.ok(!discoveryEvents.some((e) => e.kind === DiscoveryKind.LEASE_EXPIRED));
    // Logged once its Deregister call returns: the line may come a moment after the removal.
    await until('logged its deregistration', () => withId('EXPY0005I')[0]);
    assert.equal(
      await Promise.race([
        exited,
        new Promise((r) => setTimeout(() => r('still running'), 10_000)),
      ]),
      0,
    );
  });
});
