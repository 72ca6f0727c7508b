/**
 * The locked bus of deploy/nats on a real 3-node cluster: every role does its job with
 * its own credential, and every action outside its grant is refused by the server.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  AffinityBucket,
  Bus,
  BusConfigError,
  CacheBucket,
  Codecs,
  EVENTS_STREAM,
  inboxPrefix,
  Keys,
  kvStream,
  LaunchersBucket,
  LogIds,
  RegistryBucket,
  Subjects,
} from '../../bus/index.js';
import { monitorJson } from '../../services/cli/nats-monitor.js';
import { busOptions, busSettings } from '../../services/common/bus-settings.js';
import { commandLineOf } from '../../services/common/proc.js';
import { connectAs } from '../support/bus-cluster.js';
import { runCli } from '../support/cli.js';
import { captureLogs } from '../support/logs.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { rawRoleConnection } from '../support/raw-nats.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

const display = { request: Codecs.displayRequest, reply: Codecs.launcherStatus };
const status = (hostId: string) => ({
  hostId,
  launcherId: `run-${hostId}`,
  startedAtMs: 1,
  processes: [],
  components: ['gateway'],
  version: '1',
});
const PERMISSION = /permission/i;

/** Runs the `halyard` CLI against the cluster as `role`, its files given as a component's are. */
let cli: (
  args: string[],
  role: string,
) => Promise<{ code: number | null; stdout: string; stderr: string }>;

describe('a locked bus: one credential per role, least privilege', () => {
  let cluster: NatsCluster;
  const logs = captureLogs('debug');
  const open: Bus[] = [];

  /** Connects as `role` the way a component does, from its bus settings. */
  async function as(role: string): Promise<Bus> {
    const bus = await connectAs(cluster, role, logs.logger);
    open.push(bus);
    return bus;
  }

  before(async () => {
    cluster = await NatsCluster.start({ secure: true, launcherHosts: ['host-a', 'host-b'] });
    cli = (args, role) => runCli(cluster, args, { role });
    await (await as('admin')).provision();
  });
  after(async () => {
    for (const bus of open) await bus.close().catch(() => {});
    await cluster?.close();
  });

  describe('each role does its job', () => {
    test('every role checks the bus is provisioned, as far as it may see it, asking nothing it may not', async () => {
      const refusalsBefore = logs.withId(LogIds.connectionError).length;
      for (const role of [
        'gateway',
        'discovery',
        'launcher-host-a',
        'cache',
        'operator',
        'extender',
      ]) {
        await (await as(role)).checkProvisioned();
      }
      // A refused request would be a permissions violation, logged as a connection error.
      assert.equal(logs.withId(LogIds.connectionError).length, refusalsBefore);
    });

    test('discovery registers instances and publishes its events', async () => {
      const discovery = await as('discovery');
      await (await discovery.store(RegistryBucket)).put(samples.instance({ instanceId: 'i-1' }));
      await discovery.publisher().publish({ source: 'discovery', event: samples.discoveryEvent() });
    });

    test('a gateway reads the registry, writes preferences and publishes its events', async () => {
      const gateway = await as('gateway');
      const view = (await gateway.store(RegistryBucket)).view();
      await view.ready;
      assert.ok([...view.values()].some((i) => i.instanceId === 'i-1'));
      view.stop();
      const affinity = await gateway.store(AffinityBucket);
      const preference = samples.preference();
      await affinity.put(preference);
      assert.ok(await affinity.get(AffinityBucket.key(preference)));
      await gateway.publisher().publish({ source: 'gateway', event: samples.gatewayEvent() });
    });

    test('the cache uses its bucket', async () => {
      const cache = await as('cache');
      const store = await cache.store(CacheBucket);
      const entry = samples.cacheEntry();
      await store.put(entry);
      assert.deepEqual((await store.get(CacheBucket.key(entry)))?.value, entry);
    });

    test('a launcher publishes and replays its host’s lifecycle and answers control for it', async () => {
      const launcher = await as('launcher-host-a');
      const event = samples.lifecycleEvent({ hostId: 'host-a' });
      await launcher.publisher().publish({ source: 'lifecycle', event });
      const seen: string[] = [];
      await launcher.replay({ kind: 'lifecycle', filter: 'host-a.>' }, ({ event: e }) => {
        seen.push(e.eventId);
      });
      assert.ok(seen.includes(event.eventId));

      const served = await launcher.serve(
        [
          Subjects.control('launcher', 'host-a', 'display'),
          Subjects.control('launcher', '*', 'display'),
        ],
        display,
        async () => status('host-a'),
      );
      try {
        const operator = await as('operator');
        const reply = await operator.request(
          Subjects.control('launcher', 'host-a', 'display'),
          {},
          display,
        );
        assert.equal(reply.hostId, 'host-a');
      } finally {
        await served.stop();
      }
    });

    test('the operator reads events, the registry and the streams', async () => {
      const operator = await as('operator');
      const { entries } = await operator.snapshot('registrations');
      assert.ok(entries.size >= 1);
      assert.ok((await operator.streams()).some((s) => s.name === EVENTS_STREAM));
      let count = 0;
      await operator.replay({ kind: 'events' }, () => {
        count++;
      });
      assert.ok(count >= 3);
    });

    test('the CLI, as the operator, runs status, events and launcher display', async () => {
      const launcher = await as('launcher-host-a');
      const served = await launcher.serve(
        [
          Subjects.control('launcher', 'host-a', 'display'),
          Subjects.control('launcher', '*', 'display'),
        ],
        display,
        async () => status('host-a'),
      );
      try {
        const statusRun = await cli(['status', '--json'], 'operator');
        assert.ok(JSON.parse(statusRun.stdout), statusRun.stderr);
        const events = await cli(['events', '--json'], 'operator');
        assert.equal(events.code, 0, events.stderr);
        assert.ok(events.stdout.trim().split('\n').length >= 3);
        const launchers = await cli(['launcher', 'display', '--json'], 'operator');
        assert.equal(launchers.code, 0, launchers.stderr);
        assert.match(launchers.stdout, /host-a/);
      } finally {
        await served.stop();
      }
    });

    test('halyard bus provision runs as admin', async () => {
      const run = await cli(['bus', 'provision'], 'admin');
      assert.equal(run.code, 0, run.stderr);
    });

    test('an extender’s durable subscriber replays and resumes', async () => {
      const extender = await as('extender');
      const first: number[] = [];
      const sub = await extender.subscribe(
        { kind: 'events', durable: 'ext-audit', from: 'all' },
        (_d, meta) => {
          first.push(meta.seq);
        },
      );
      await until('the extender replays every event', () => first.length >= 3);
      await sub.stop();
      const discovery = await as('discovery');
      const later = samples.discoveryEvent();
      await discovery.publisher().publish({ source: 'discovery', event: later });
      const resumed: number[] = [];
      const again = await extender.subscribe(
        { kind: 'events', durable: 'ext-audit' },
        (_d, meta) => {
          resumed.push(meta.seq);
        },
      );
      await until('the durable resumes where it left off', () => resumed.length >= 1);
      await again.stop();
      assert.ok(resumed[0]! > Math.max(...first));
    });
  });

  describe('each forbidden action is refused', () => {
    test('anonymous: a connection without a role credential', async () => {
      const { servers, ca, cert, key } = cluster.role('gateway');
      const settings = busSettings.parse({ servers, ca, cert, key });
      await assert.rejects(
        Bus.connect({ ...busOptions(settings, 'anonymous', logs.logger), failFast: true }),
        /authoriz/i,
      );
    });

    test('a connection without TLS', async () => {
      // A NATS client upgrades by itself when the server asks for TLS, so speak plain
      // NATS protocol over TCP, as an old or hostile client would.
      const port = Number(new URL(cluster.servers[0]!).port);
      const socket = net.connect(port, '127.0.0.1');
      let received = '';
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.on('data', (chunk) => {
        const first = received === '';
        received += chunk.toString('utf8');
        if (first) socket.write('CONNECT {"verbose":true,"pedantic":false}\r\nPING\r\n');
      });
      try {
        await closed;
        assert.match(received, /^INFO .*"tls_required":true/);
        assert.doesNotMatch(received, /\+OK|PONG/);
      } finally {
        socket.destroy();
      }
    });

    test('a role without its name: its replies would go where it may not read', async () => {
      const { role: _role, ...files } = cluster.role('gateway');
      await assert.rejects(
        Bus.connect({
          ...busOptions(busSettings.parse(files), 'nameless', logs.logger),
          failFast: true,
        }),
        (error: Error) =>
          error instanceof BusConfigError && /HALYARD_NATS_ROLE/.test(error.message),
      );
    });

    test('a role reads the replies sent to another', async () => {
      const nc = await rawRoleConnection(cluster.role('cache'));
      try {
        const sub = nc.subscribe(`${inboxPrefix('gateway')}.>`);
        assert.match(String(await sub.closed), PERMISSION);
      } finally {
        await nc.close();
      }
    });

    test('halyard bus provision as anyone but admin', async () => {
      await (await as('admin')).provision(); // nothing left to create: the check alone is asked
      const run = await cli(['bus', 'provision'], 'operator');
      assert.notEqual(run.code, 0);
      assert.match(run.stderr, PERMISSION);
    });

    test('a gateway writes the registry', async () => {
      const gateway = await as('gateway');
      const store = await gateway.store(RegistryBucket);
      await assert.rejects(store.put(samples.instance({ instanceId: 'rogue' })), PERMISSION);
    });

    test('the cache reads the registry', async () => {
      const cache = await as('cache');
      const registry = await cache.store(RegistryBucket);
      await assert.rejects(registry.get(Keys.registry('orders', 'i-1')), PERMISSION);
    });

    test('an extender publishes a control request', async () => {
      const extender = await as('extender');
      await assert.rejects(
        extender.request(Subjects.control('launcher', 'host-a', 'display'), {}, display, 2000),
        PERMISSION,
      );
    });

    for (const role of [
      'gateway',
      'discovery',
      'launcher-host-a',
      'cache',
      'operator',
      'extender',
    ]) {
      test(`${role} purges or deletes a stream`, async () => {
        const nc = await rawRoleConnection(cluster.role(role));
        try {
          const jsm = await jetstreamManager(nc, { checkAPI: false });
          await assert.rejects(jsm.streams.purge(EVENTS_STREAM), PERMISSION);
          await assert.rejects(jsm.streams.delete(EVENTS_STREAM), PERMISSION);
          await assert.rejects(jsm.streams.delete(kvStream(RegistryBucket.name)), PERMISSION);
        } finally {
          await nc.close();
        }
      });
    }

    test('a launcher reads or writes another host’s children', async () => {
      const children = (hostId: string) => ({
        hostId,
        launcherId: `run-${hostId}`,
        updatedAtMs: Date.now(),
        children: [],
      });
      const admin = await (await as('admin')).store(LaunchersBucket);
      await admin.put(children('host-b'));
      const own = await (await as('launcher-host-a')).store(LaunchersBucket);
      await own.put(children('host-a'));
      // A direct get may be answered by a follower a moment behind the write.
      await until(
        'its own value read back',
        async () => (await own.get(Keys.launcherChildren('host-a')))?.value.hostId === 'host-a',
      );
      await assert.rejects(own.put(children('host-b')), PERMISSION);
      await assert.rejects(own.get(Keys.launcherChildren('host-b')), PERMISSION);
    });

    test('a launcher answers control for another host', async () => {
      const launcher = await as('launcher-host-a');
      const served = await launcher.serve(
        [Subjects.control('launcher', 'host-b', 'display')],
        display,
        async () => status('host-b'),
      );
      try {
        const operator = await as('operator');
        await assert.rejects(
          operator.request(Subjects.control('launcher', 'host-b', 'display'), {}, display, 1000),
          (error: Error) =>
            /UNAVAILABLE|no responders/i.test(
              `${error.message} ${(error as { code?: string }).code}`,
            ),
        );
      } finally {
        await served.stop();
      }
    });

    test('a server without the route credential cannot join the cluster', async () => {
      const dir = fs.mkdtempSync(path.join(cluster.dir, 'rogue-'));
      const log = path.join(dir, 'rogue.log');
      const node = cluster.nodes[0]!;
      const routes = cluster.nodes.map(
        (n) => `nats-route://127.0.0.1:${hostPort(cluster, n.name, 'ROUTE')}`,
      );
      fs.writeFileSync(
        path.join(dir, 'rogue.conf'),
        [
          'server_name: rogue',
          'listen: "127.0.0.1:-1"',
          `log_file: ${JSON.stringify(log)}`,
          `cluster { name: ${JSON.stringify(clusterName(cluster))}, listen: "127.0.0.1:-1", routes: [${routes.map((r) => JSON.stringify(r)).join(', ')}] }`,
        ].join('\n'),
      );
      const rogue = spawn(
        process.env.NATS_SERVER_BIN ?? 'nats-server',
        ['-c', path.join(dir, 'rogue.conf')],
        {
          stdio: 'ignore',
        },
      );
      try {
        await until('the rogue server is turned away', () => {
          const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
          // The cluster's servers hang up on each attempt, which the rogue retries.
          return (text.match(/Router connection closed/g) ?? []).length >= cluster.nodes.length;
        });
        const routez = (await monitorJson(hostPort(cluster, node.name, 'MONITOR'), '/routez')) as {
          routes?: Array<{ remote_name?: string }>;
        };
        assert.ok(!(routez.routes ?? []).some((r) => r.remote_name === 'rogue'));
        assert.equal(
          new Set((routez.routes ?? []).map((r) => r.remote_name)).size,
          cluster.nodes.length - 1,
        );
      } finally {
        rogue.kill('SIGKILL');
      }
    });
  });

  test('secrets are in no log, no process listing and no bus message', async () => {
    const bundle = cluster.bundle!;
    const secrets = fs
      .readdirSync(path.join(bundle, 'roles'))
      .map((role) => fs.readFileSync(path.join(bundle, 'roles', role, 'nkey.seed'), 'utf8').trim());
    const keyBodies = fs
      .readdirSync(path.join(bundle, 'roles'))
      .map(
        (role) =>
          fs.readFileSync(path.join(bundle, 'roles', role, 'client.key'), 'utf8').split('\n')[1]!,
      );
    const logged = JSON.stringify(logs.lines);
    const serverLogs = cluster.nodes
      .map((n) => fs.readFileSync(path.join(cluster.dir, `${n.name}.log`), 'utf8'))
      .join('\n');
    const listings = cluster.nodes.map((n) => commandLineOf(n.pid!) ?? '').join('\n');
    const operator = await as('operator');
    const messages: string[] = [];
    await operator.replay({ kind: 'events' }, (d) => {
      messages.push(JSON.stringify(d));
    });
    for (const secret of [...secrets, ...keyBodies]) {
      for (const [where, text] of Object.entries({
        logged,
        serverLogs,
        listings,
        messages: messages.join('\n'),
      })) {
        assert.ok(!text.includes(secret), `a secret appears in ${where}`);
      }
    }
  });
});

/** The cluster's name, which a rogue server must give to be taken for one of it. */
function clusterName(cluster: NatsCluster): string {
  const conf = fs.readFileSync(path.join(cluster.bundle!, 'hosts', 'n0', 'routes.conf'), 'utf8');
  return JSON.parse(/^name: (".*")$/m.exec(conf)![1]!) as string;
}

/** A port of a node, from the host.conf or routes.conf the secure cluster runs it with. */
function hostPort(cluster: NatsCluster, name: string, listener: 'ROUTE' | 'MONITOR'): number {
  const [file, pattern] =
    listener === 'ROUTE'
      ? ['routes.conf', /^listen: "[^:]+:(\d+)"/m]
      : ['host.conf', /HALYARD_MONITOR_LISTEN: "[^:]+:(\d+)"/];
  const conf = fs.readFileSync(path.join(cluster.bundle!, 'hosts', name, file), 'utf8');
  return Number(pattern.exec(conf)![1]);
}
