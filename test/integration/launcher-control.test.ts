import assert from 'node:assert/strict';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  credentials,
  Metadata,
  makeClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { type Bus, ControlError, type LauncherStatus, Subjects } from '../../bus/index.js';
import { serviceDefinition } from '../../services/common/grpc.js';
import { ControlCodecsOf } from '../../services/launcher/control.js';
import type { Launcher } from '../../services/launcher/launcher.js';
import { LogIds } from '../../services/launcher/log-ids.js';
import { launcherMetrics } from '../../services/launcher/metrics.js';
import { startBusCluster } from '../support/bus-cluster.js';
import {
  type ControlCaller,
  child,
  collectEvents,
  controlToken,
  Kind,
  kindName,
  pidAlive,
  State,
  startLauncher,
  writeConfig,
} from '../support/launcher.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const node = process.execPath;
// biome-ignore lint/suspicious/noTemplateCurlyInString: the launcher's port placeholder
const healthz = 'http://127.0.0.1:${PORT}/healthz';
const service = (extra: object = {}) => ({
  command: node,
  args: [child('service')],
  port: {},
  readiness: { http: healthz },
  stop: { timeoutSeconds: 5 },
  ...extra,
});

type Callback<T> = (error: ServiceError | null, reply: T) => void;
type Method = 'display' | 'stop' | 'restart';
type LauncherStub = Record<Method, (r: object, m: Metadata, cb: Callback<unknown>) => void> & {
  close(): void;
};
const LauncherStub = makeClientConstructor(
  serviceDefinition('halyard.launcher.v1.Launcher'),
  'Launcher',
);
interface LauncherClient {
  readonly stub: LauncherStub;
  readonly metadata: Metadata;
  close(): void;
}
/** A client of the gRPC API calling as `caller` (its token read from its file), or anonymously. */
function grpcClient(
  port: number,
  caller: ControlCaller | 'anonymous' = 'operator',
): LauncherClient {
  const stub = new LauncherStub(
    `127.0.0.1:${port}`,
    credentials.createInsecure(),
  ) as unknown as LauncherStub;
  const metadata = new Metadata();
  if (caller !== 'anonymous') metadata.set('authorization', `Bearer ${controlToken(caller)}`);
  return { stub, metadata, close: () => stub.close() };
}
function unary<T>(client: LauncherClient, method: Method, request: object) {
  return new Promise<T>((resolve, reject) =>
    client.stub[method].call(client.stub, request, client.metadata, (error, reply) =>
      error ? reject(error) : resolve(reply as T),
    ),
  );
}

/** One HTTP call on a fresh connection (no keep-alive: each call picks its instance). */
function call(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path: '/work', agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () =>
        res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`)),
      );
    });
    req.on('error', reject);
  });
}

const pidsOf = (launcher: Launcher, component: string) =>
  launcher
    .display()
    .processes.filter((p) => p.component === component)
    .map((p) => p.pid);

describe('launcher control', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  const busLogs = captureLogs('warn');

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-control', busLogs.logger));
  });
  after(async () => {
    await bus?.close();
    await cluster?.close();
  });

  test('display through gRPC and through the bus (two launchers); unknown component → NOT_FOUND', async () => {
    const a = await startLauncher(bus, 'host-a', { components: { svc: service() } });
    const b = await startLauncher(bus, 'host-b', {
      components: { svc: service({ instances: 2 }) },
    });
    const client = grpcClient(a.launcher.grpcPort);
    try {
      await until('all ready', () =>
        [a, b].every(({ launcher }) =>
          launcher.display().processes.every((p) => p.state === State.READY),
        ),
      );
      const viaGrpc = await unary<LauncherStatus>(client, 'display', {});
      assert.equal(viaGrpc.hostId, 'host-a');
      assert.deepEqual(viaGrpc.components, ['svc']);
      assert.equal(viaGrpc.processes[0]?.state, State.READY);
      assert.equal(viaGrpc.processes[0]?.pid, a.launcher.display().processes[0]?.pid);

      const replies = await bus.requestMany(
        Subjects.control('launcher', '*', 'display'),
        {},
        ControlCodecsOf.display,
        1000,
      );
      const statuses = replies.map((r) => (r.ok ? r.value : assert.fail(r.error.message)));
      assert.deepEqual(statuses.map((s) => s.hostId).sort(), ['host-a', 'host-b']);
      const ofB = statuses.find((s) => s.hostId === 'host-b')!;
      assert.deepEqual(
        ofB.processes.map((p) => [p.component, p.instance, p.state]),
        [
          ['svc', 1, State.READY],
          ['svc', 2, State.READY],
        ],
      );
      assert.ok(ofB.processes.every((p) => p.port > 0 && p.pid > 0 && p.startedAtMs > 0));

      const one = await bus.request(
        Subjects.control('launcher', 'host-b', 'display'),
        {},
        ControlCodecsOf.display,
      );
      assert.equal(one.launcherId, b.launcher.launcherId);

      await assert.rejects(
        unary(client, 'stop', { component: 'nope', instance: 0 }),
        (e: ServiceError) => {
          assert.equal(e.code, status.NOT_FOUND);
          assert.match(e.details, /no component "nope"/);
          return true;
        },
      );
      await assert.rejects(
        bus.request(
          Subjects.control('launcher', 'host-b', 'restart'),
          { component: 'nope', instance: 0 },
          ControlCodecsOf.restart,
        ),
        (e: unknown) => e instanceof ControlError && e.code === 'NOT_FOUND',
      );
      await assert.rejects(
        bus.request(
          Subjects.control('launcher', 'host-b', 'stop'),
          { component: 'svc', instance: 3 },
          ControlCodecsOf.stop,
        ),
        (e: unknown) =>
          e instanceof ControlError && e.code === 'NOT_FOUND' && /no instance 3/.test(e.message),
      );
    } finally {
      client.close();
      await a.launcher.shutdown();
      await b.launcher.shutdown();
    }
  });

  test('gRPC control admits only granted callers; refusals are counted and logged without the token', async () => {
    const { launcher, logs } = await startLauncher(bus, 'host-guarded', {
      components: { svc: service() },
    });
    const clients = {
      anonymous: grpcClient(launcher.grpcPort, 'anonymous'),
      monitor: grpcClient(launcher.grpcPort, 'monitor'),
      stranger: grpcClient(launcher.grpcPort, 'stranger'),
      operator: grpcClient(launcher.grpcPort, 'operator'),
    };
    const forged = grpcClient(launcher.grpcPort, 'anonymous');
    forged.metadata.set('authorization', 'Bearer not-a-listed-token');
    const refused = (reason: string) =>
      launcherMetrics.controlRefused.get().then((m) => {
        return m.values.find((v) => v.labels.reason === reason)?.value ?? 0;
      });
    const rejectsWith = (p: Promise<unknown>, code: status, pattern: RegExp) =>
      assert.rejects(p, (e: ServiceError) => {
        assert.equal(e.code, code, e.details);
        assert.match(e.details, pattern);
        return true;
      });
    try {
      await until('ready', () => launcher.display().processes[0]?.state === State.READY);
      const [pid] = pidsOf(launcher, 'svc');
      const before = {
        unauthenticated: await refused('unauthenticated'),
        notGranted: await refused('not_granted'),
      };
      const stop = { component: 'svc', instance: 0 };

      await rejectsWith(
        unary(clients.anonymous, 'display', {}),
        status.UNAUTHENTICATED,
        /no identity/,
      );
      await rejectsWith(
        unary(clients.anonymous, 'stop', stop),
        status.UNAUTHENTICATED,
        /no identity/,
      );
      await rejectsWith(
        unary(forged, 'stop', stop),
        status.UNAUTHENTICATED,
        /unknown service token/,
      );
      await rejectsWith(
        unary(clients.stranger, 'display', {}),
        status.PERMISSION_DENIED,
        /stranger .* not granted read/,
      );
      // Read is not control.
      const seen = await unary<LauncherStatus>(clients.monitor, 'display', {});
      assert.equal(seen.hostId, 'host-guarded');
      await rejectsWith(
        unary(clients.monitor, 'stop', stop),
        status.PERMISSION_DENIED,
        /monitor .* not granted control, which Launcher\/stop needs/,
      );
      await rejectsWith(
        unary(clients.monitor, 'restart', stop),
        status.PERMISSION_DENIED,
        /not granted control/,
      );
      assert.deepEqual(pidsOf(launcher, 'svc'), [pid], 'nothing refused was done');
      assert.ok(pidAlive(pid!));

      assert.equal((await refused('unauthenticated')) - before.unauthenticated, 3);
      assert.equal((await refused('not_granted')) - before.notGranted, 3);
      const lines = logs.withId(LogIds.controlRefused);
      assert.equal(lines.length, 6);
      const text = JSON.stringify(logs.lines);
      for (const caller of ['operator', 'monitor', 'stranger'] as const) {
        assert.ok(!text.includes(controlToken(caller)), `${caller}'s token is never logged`);
      }
      assert.ok(!text.includes('not-a-listed-token'), 'an unknown token is never logged');

      // The operator may do everything.
      await unary(clients.operator, 'stop', stop);
      assert.equal(launcher.display().processes[0]?.state, State.STOPPED);
    } finally {
      for (const c of [...Object.values(clients), forged]) c.close();
      await launcher.shutdown();
    }
  });

  test('rolling restart of three instances while a client calls them: zero failed calls', async () => {
    const host = 'host-roll';
    const live = await collectEvents(bus, host);
    const { launcher } = await startLauncher(bus, host, {
      components: { svc: service({ instances: 3, drainSeconds: 0.3 }) },
    });
    const client = grpcClient(launcher.grpcPort);
    try {
      await until(
        'three ready',
        () => launcher.display().processes.filter((p) => p.state === State.READY).length === 3,
      );
      const before = pidsOf(launcher, 'svc');
      // The client routes like a gateway would: only to instances that are READY right now.
      let calls = 0;
      const failures: string[] = [];
      const servedBy = new Set<number>();
      let running = true;
      const load = (async () => {
        for (let n = 0; running && n < 100_000; n++) {
          const ready = launcher.display().processes.filter((p) => p.state === State.READY);
          const target = ready[n % ready.length];
          if (!target) continue;
          try {
            servedBy.add(JSON.parse(await call(target.port)).pid);
            calls++;
          } catch (error) {
            failures.push(`${target.instance}: ${(error as Error).message}`);
          }
        }
      })();
      await unary(client, 'restart', { component: 'svc', instance: 0 });
      const done = calls;
      await until('calls to the new processes', () => calls >= done + 30);
      running = false;
      await load;
      assert.deepEqual(failures, []);
      assert.ok(calls > 50, `only ${calls} calls`);
      const afterPids = pidsOf(launcher, 'svc');
      assert.ok(
        afterPids.every((pid) => !before.includes(pid)),
        'every instance was replaced',
      );
      assert.deepEqual(
        afterPids.filter((pid) => servedBy.has(pid)),
        afterPids,
        'the new processes served calls',
      );
      // One at a time: each instance is READY again before the next one stops.
      await until('all events', () => live.events.filter((e) => e.kind === Kind.READY).length >= 6);
      const sequence = live.events
        .filter((e) => e.kind === Kind.STOPPING || e.kind === Kind.READY)
        .slice(3)
        .map((e) => `${kindName(e.kind)}#${e.instance}`);
      assert.deepEqual(sequence, [
        'STOPPING#1',
        'READY#1',
        'STOPPING#2',
        'READY#2',
        'STOPPING#3',
        'READY#3',
      ]);
    } finally {
      client.close();
      await launcher.shutdown();
      await live.stop();
    }
  });

  test('a rolling restart aborts and says so when a new instance does not become ready', async () => {
    const host = 'host-abort';
    const { launcher } = await startLauncher(bus, host, {
      components: { svc: service({ instances: 2, readyTimeoutSeconds: 1 }) },
    });
    try {
      await until('ready', () =>
        launcher.display().processes.every((p) => p.state === State.READY),
      );
      // Its port is now taken by something else: the new process cannot listen.
      const port = launcher.display().processes[0]!.port;
      await launcher.stop({ component: 'svc', instance: 1 });
      const squatter = createServer();
      await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve));
      try {
        await assert.rejects(
          launcher.restart({ component: 'svc', instance: 0 }),
          (e: unknown) =>
            e instanceof ControlError &&
            e.code === 'ABORTED' &&
            /svc#1 did not become ready/.test(e.message),
        );
        // The second instance was not touched.
        assert.equal(launcher.display().processes[1]?.state, State.READY);
      } finally {
        squatter.close();
      }
    } finally {
      await launcher.shutdown();
    }
  });

  test('refresh applies the difference only; an invalid file is rejected and changes nothing', async () => {
    const host = 'host-refresh';
    const idle = (args: string[] = []) => ({
      command: node,
      args: [child('service'), ...args],
      port: {},
    });
    const { launcher, configFile } = await startLauncher(bus, host, {
      components: { keep: idle(), gone: idle(), grow: idle(), roll: idle() },
    });
    try {
      await until('ready', () =>
        launcher.display().processes.every((p) => p.state === State.READY),
      );
      const before = Object.fromEntries(
        launcher.supervisor.names().map((c) => [c, pidsOf(launcher, c)]),
      );

      // Invalid: two problems, both reported; nothing changes.
      await writeConfig(
        { hostId: host, components: { keep: { ...idle(), instances: -1 }, bad: { args: [] } } },
        configFile,
      );
      const rejected = await bus
        .request(Subjects.control('launcher', host, 'refresh'), {}, ControlCodecsOf.refresh)
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(rejected instanceof ControlError && rejected.code === 'INVALID_ARGUMENT');
      assert.match(rejected.message, /components\.keep\.instances/);
      assert.match(rejected.message, /components\.bad\.command/);
      assert.deepEqual(
        Object.fromEntries(launcher.supervisor.names().map((c) => [c, pidsOf(launcher, c)])),
        before,
      );

      await writeConfig(
        {
          hostId: host,
          components: {
            keep: idle(),
            grow: { ...idle(), instances: 2 },
            roll: idle(['--grandchild']),
            fresh: idle(),
          },
        },
        configFile,
      );
      const result = await bus.request(
        Subjects.control('launcher', host, 'refresh'),
        {},
        ControlCodecsOf.refresh,
      );
      assert.equal(
        result.detail,
        'added: fresh; removed: gone; scaled: grow; changed: roll; unchanged: keep',
      );
      await until('ready', () =>
        launcher.display().processes.every((p) => p.state === State.READY),
      );
      assert.deepEqual(launcher.supervisor.names(), ['keep', 'grow', 'roll', 'fresh']);
      assert.deepEqual(pidsOf(launcher, 'keep'), before.keep, 'unchanged component untouched');
      assert.equal(pidsOf(launcher, 'grow')[0], before.grow![0], 'scaling kept instance 1');
      assert.equal(pidsOf(launcher, 'grow').length, 2);
      assert.notEqual(pidsOf(launcher, 'roll')[0], before.roll![0], 'changed component rolled');
      assert.equal(pidsOf(launcher, 'fresh').length, 1);
      assert.equal(pidAlive(before.gone![0]!), false, 'removed component stopped');
    } finally {
      await launcher.shutdown();
    }
  });
});
