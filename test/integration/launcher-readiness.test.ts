import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Bus, RegistryBucket } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { child, collectEvents, Kind, State, startLauncher } from '../support/launcher.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

const { UP, DRAINING } = halyard.discovery.v1.InstanceStatus;

describe('launcher readiness probes', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  const busLogs = captureLogs('warn');

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-readiness', busLogs.logger));
  });
  after(async () => {
    await bus?.close();
    await cluster?.close();
  });

  test('gRPC health check: READY once the child serves grpc.health.v1', async () => {
    const host = 'host-grpc';
    const live = await collectEvents(bus, host);
    const { launcher, logs } = await startLauncher(bus, host, {
      components: {
        api: {
          command: process.execPath,
          args: [child('service'), '--grpc'],
          port: {},
          readiness: { grpc: {} },
        },
      },
    });
    try {
      const ready = await until(
        'ready',
        () => live.events.find((e) => e.kind === Kind.READY),
        15_000,
      );
      assert.equal(launcher.display().processes[0]?.state, State.READY);
      assert.equal(ready.port, launcher.display().processes[0]?.port);
      // The probe succeeded only after the child said it serves.
      const serving = logs.lines.findIndex((l) => /^grpc health on \d+$/.test(String(l.msg)));
      const readyLine = logs.lines.findIndex((l) => l.eventId === ready.eventId);
      assert.ok(serving >= 0 && serving < readyLine);
    } finally {
      await launcher.shutdown();
      await live.stop();
    }
  });

  test('registered in discovery: READY only once UP in the registry; a rolling restart marks it DRAINING first', async () => {
    const host = 'host-reg';
    const store = await bus.store(RegistryBucket);
    const live = await collectEvents(bus, host);
    const { launcher } = await startLauncher(bus, host, {
      components: {
        orders: {
          command: process.execPath,
          args: [child('service')],
          port: {},
          readiness: { registered: { serviceId: 'orders' } },
          drainSeconds: 0.2,
        },
      },
    });
    // What the instance itself would do through discovery's Register.
    const register = (port: number) =>
      store.put(
        samples.instance({
          serviceId: 'orders',
          instanceId: `${host}-orders-1`,
          hostId: host,
          address: `127.0.0.1:${port}`,
          status: UP,
          leaseSeconds: 60,
          renewedAtMs: Date.now(),
        }),
      );
    const key = `orders.${host}-orders-1`;
    try {
      const started = await until('started', () =>
        live.events.find((e) => e.kind === Kind.STARTED),
      );
      assert.equal(
        launcher.display().processes[0]?.state,
        State.RUNNING,
        'not ready before registration',
      );
      const registeredAt = Date.now();
      await register(started.port);
      const ready = await until('ready', () => live.events.find((e) => e.kind === Kind.READY));
      assert.ok(ready.occurredAtMs >= registeredAt);

      const restart = launcher.restart({ component: 'orders', instance: 0 });
      await until('marked draining', async () => (await store.get(key))?.value.status === DRAINING);
      const restarted = await until(
        'second start',
        () => live.events.filter((e) => e.kind === Kind.STARTED)[1],
      );
      const stopping = live.events.find((e) => e.kind === Kind.STOPPING)!;
      assert.ok(stopping.occurredAtMs < restarted.occurredAtMs);
      assert.equal(launcher.display().processes[0]?.state, State.RUNNING, 'DRAINING is not ready');
      await register(restarted.port);
      const result = await restart;
      assert.equal(result.accepted, true);
      assert.equal(launcher.display().processes[0]?.state, State.READY);
    } finally {
      await launcher.shutdown();
      await live.stop();
      await store.remove(key);
    }
  });
});
