import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import {
  Bus,
  Keys,
  LaunchersBucket,
  type LifecycleEvent,
  type RunningChild,
} from '../../bus/index.js';
import { procStat } from '../../services/common/proc.js';
import { LogIds } from '../../services/launcher/log-ids.js';
import { launcherMarker } from '../../services/launcher/process.js';
import { startBusCluster } from '../support/bus-cluster.js';
import {
  child,
  collectEvents,
  groupMembers,
  Kind,
  listening,
  pidAlive,
  type Running,
  readyPids,
  runLauncher,
  writeConfig,
} from '../support/launcher.js';
import { captureLogs } from '../support/logs.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { processesWithEnvironment } from '../support/processes.js';
import * as samples from '../support/samples.js';
import { until } from '../support/wait.js';

/** Processes on this machine that a launcher started for `host` (from their environment). */
function childrenOfHost(host: string): number[] {
  return [...processesWithEnvironment({ HALYARD_HOST: host }).keys()];
}

const config = (host: string, recovery: 'stop' | 'adopt') =>
  writeConfig({
    hostId: host,
    recovery,
    components: {
      svc: {
        command: process.execPath,
        args: [child('service'), '--grandchild'],
        instances: 2,
        port: {},
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the launcher's port placeholder
        readiness: { http: 'http://127.0.0.1:${PORT}/healthz' },
        stop: { timeoutSeconds: 5 },
      },
    },
  });

/** The pids the host's launcher recorded on the bus, once they are exactly `pids`. */
const recordedAs = async (bus: Bus, host: string, pids: readonly number[]) => {
  const store = await bus.store(LaunchersBucket);
  return until(`children of ${host} recorded as ${pids.join(',') || 'none'}`, async () => {
    const recorded = await store.get(Keys.launcherChildren(host));
    const recordedPids = recorded?.value.children.map((c) => c.pid).sort() ?? [];
    return (
      recorded !== undefined &&
      JSON.stringify(recordedPids) === JSON.stringify([...pids].sort()) &&
      recorded.value
    );
  });
};

describe('launcher process: bad config, kill -9 and recovery', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  const busLogs = captureLogs('warn');
  const started: Running[] = [];
  const run = (args: string[]) => {
    const r = runLauncher(args);
    started.push(r);
    return r;
  };

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-recovery', busLogs.logger));
  });
  after(async () => {
    for (const r of started) if (r.proc.exitCode === null) r.proc.kill('SIGKILL');
    await bus?.close();
    await cluster?.close();
  });

  test('an invalid config at start: exit non-zero with every error listed', async () => {
    const file = await writeConfig({
      hostId: 'host-x',
      components: { a: { instances: 'two' }, b: { command: 'x', dependsOn: ['missing'] } },
    });
    const r = run(['--config', file, '--nats', cluster.servers.join(',')]);
    assert.equal(await r.exited, 2);
    const text = r.stderr.join('\n');
    assert.match(text, /components\.a\.command/);
    assert.match(text, /components\.a\.instances/);
    assert.match(text, /components\.b\.dependsOn\.0: no component "missing"/);
  });

  test('kill -9 of the launcher, then restart: leftovers stopped, no orphan, no duplicate', async () => {
    // Unique per run: process scans must never see another run's children.
    const host = `host-kill-${process.pid}`;
    const file = await config(host, 'stop');
    const args = ['--config', file, '--nats', cluster.servers.join(',')];
    const first = run(args);
    await listening(first);
    const oldPids = await until('ready', () => readyPids(bus, host), 15_000);
    const oldGroupMembers = oldPids.flatMap((pid) => groupMembers(pid));
    assert.equal(oldGroupMembers.length, 4, 'two children, each with a grandchild');

    const recorded = await recordedAs(bus, host, oldPids);
    assert.ok(
      recorded.children.every(
        (c) => c.marker === launcherMarker(host, c.component, c.instance).value && c.port > 0,
      ),
    );

    first.proc.kill('SIGKILL');
    await first.exited;
    assert.ok(oldGroupMembers.every(pidAlive), 'the children outlive a killed launcher');

    // A recorded child that is a process no launcher started, with its true start time:
    // a `sleep` of the test's own, leading its group as a child would, without the marker.
    const stranger = spawn('sleep', ['30'], { stdio: 'ignore', detached: true });
    const strangerPid = stranger.pid!;
    const impostor: RunningChild = {
      component: 'other',
      instance: 1,
      pid: strangerPid,
      processStart: procStat(strangerPid)!.start,
      port: 0,
      marker: launcherMarker(host, 'other', 1).value,
      launcherId: 'old-run',
      configVersion: 0,
      specDigest: '',
    };
    await (await bus.store(LaunchersBucket)).put({
      ...recorded,
      children: [...recorded.children, impostor],
    });

    const live = await collectEvents(bus, host);
    const second = run(args);
    await listening(second);
    const newPids = await until('ready again', () => readyPids(bus, host), 15_000);
    assert.ok(
      oldGroupMembers.every((pid) => !pidAlive(pid)),
      'leftovers and their groups stopped',
    );
    assert.ok(newPids.every((pid) => !oldPids.includes(pid)));
    // No duplicate: exactly the new instances (and their grandchildren) run for this host.
    assert.deepEqual(
      childrenOfHost(host).sort(),
      newPids.flatMap((pid) => groupMembers(pid)).sort(),
    );
    const stops = live.events.filter(
      (e: LifecycleEvent) =>
        e.kind === Kind.STOPPED && /left running by launcher run/.test(e.reason),
    );
    assert.deepEqual(stops.map((e) => e.pid).sort(), [...oldPids].sort());
    assert.ok(pidAlive(strangerPid), 'a pid without the launcher marker is never signalled');
    assert.ok(second.lines.some((l) => l.msgId === LogIds.leftoverGone && l.pid === strangerPid));
    stranger.kill('SIGKILL');
    assert.ok(
      second.lines.some(
        (l) => l.msgId === LogIds.recoveredRecorded && l.recorded === 3 && l.leftovers === 2,
      ),
    );
    await recordedAs(bus, host, newPids);

    second.proc.kill('SIGTERM');
    assert.equal(await second.exited, 0);
    assert.deepEqual(childrenOfHost(host), [], 'graceful stop leaves no process behind');
    await recordedAs(bus, host, []);
    await live.stop();
  });

  test('adopt mode, nothing recorded: recovery by replay keeps the leftovers; a reused pid is never touched; admin endpoints', async () => {
    const host = `host-adopt-${process.pid}`;
    const file = await config(host, 'adopt');
    const args = ['--config', file, '--nats', cluster.servers.join(',')];
    const first = run(args);
    await listening(first);
    const oldPids = await until('ready', () => readyPids(bus, host), 15_000);
    await recordedAs(bus, host, oldPids);
    first.proc.kill('SIGKILL');
    await first.exited;
    // As on a bus where no launcher of this host ever recorded its children.
    await (await bus.store(LaunchersBucket)).remove(Keys.launcherChildren(host));

    // Stale STARTED events naming live processes that are no child of any launcher: one
    // whose pid was reused (another start time) and init, with its true start time.
    const stranger = spawn('sleep', ['30'], { stdio: 'ignore' });
    for (const [component, pid, processStart] of [
      ['other', stranger.pid!, 1],
      ['init', 1, procStat(1)!.start],
    ] as const) {
      await bus.publisher().publish({
        source: 'lifecycle',
        event: samples.lifecycleEvent({
          eventId: `${host}/${component}/1/old-run/1`,
          kind: Kind.STARTED,
          hostId: host,
          component,
          instance: 1,
          pid,
          processStart,
        }),
      });
    }

    const second = run(args);
    const { adminPort } = (await listening(second)) as { adminPort: number };
    const adopted = await until('ready again', () => readyPids(bus, host), 15_000);
    assert.deepEqual(adopted, oldPids, 'the same processes, adopted');
    assert.deepEqual(childrenOfHost(host).length, 4, 'no second set started');
    assert.ok(pidAlive(stranger.pid!), 'a pid that is another process is left alone');
    assert.ok(second.lines.some((l) => l.msgId === LogIds.leftoverGone && l.pid === stranger.pid));
    assert.ok(second.lines.some((l) => l.msgId === LogIds.leftoverGone && l.pid === 1));
    stranger.kill('SIGKILL');
    assert.ok(second.lines.some((l) => l.msgId === LogIds.replayed && l.leftovers === 2));
    await recordedAs(bus, host, oldPids);

    const admin = `http://127.0.0.1:${adminPort}`;
    assert.equal((await fetch(`${admin}/healthz`)).status, 200);
    assert.equal((await fetch(`${admin}/readyz`)).status, 200);
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    assert.match(metrics, /halyard_launcher_children\{state="ready"\} 2/);
    assert.match(metrics, /halyard_launcher_leftovers_total\{action="adopted"\} 2/);

    second.proc.kill('SIGTERM');
    assert.equal(await second.exited, 0);
    assert.deepEqual(childrenOfHost(host), [], 'adopted children are stopped with the launcher');
  });
});

describe('launcher process: recovery outlives the events', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  const busLogs = captureLogs('warn');
  const started: Running[] = [];

  before(async () => {
    cluster = await NatsCluster.start({ provision: false });
    bus = await Bus.connect({
      servers: cluster.servers,
      name: 'test-short-retention',
      logger: busLogs.logger,
    });
    // Events are kept two seconds: long enough for a run, never for a restart.
    await bus.provision({ eventsMaxAgeMs: 2000 });
  });
  after(async () => {
    for (const r of started) if (r.proc.exitCode === null) r.proc.kill('SIGKILL');
    await bus?.close();
    await cluster?.close();
  });

  test('a launcher restarted after its events expired adopts every child and starts none', async () => {
    const host = `host-expired-${process.pid}`;
    const args = ['--config', await config(host, 'adopt'), '--nats', cluster.servers.join(',')];
    const first = runLauncher(args);
    started.push(first);
    await listening(first);
    const oldPids = await until('ready', () => readyPids(bus, host), 15_000);
    await recordedAs(bus, host, oldPids);
    first.proc.kill('SIGKILL');
    await first.exited;

    const eventsOfHost = () => bus.replay({ kind: 'lifecycle', filter: `${host}.>` }, () => {});
    await until('the host’s events expired', async () => (await eventsOfHost()) === 0, 15_000, 200);

    const second = runLauncher(args);
    started.push(second);
    await listening(second);
    const adopted = await until('ready again', () => readyPids(bus, host), 15_000);
    assert.deepEqual(adopted, oldPids, 'the same processes, adopted');
    assert.equal(childrenOfHost(host).length, 4, 'two children and their grandchildren, no more');
    assert.ok(!second.lines.some((l) => l.msgId === LogIds.starting), 'no instance started');
    assert.ok(second.lines.some((l) => l.msgId === LogIds.recoveredRecorded && l.leftovers === 2));

    // Every transition is recorded: a child (its group) killed and restarted is replaced in the record.
    process.kill(-adopted[0]!, 'SIGKILL');
    const restarted = await until(
      'restarted',
      async () => {
        const pids = await readyPids(bus, host);
        return pids && !pids.includes(adopted[0]!) && pids;
      },
      15_000,
    );
    await recordedAs(bus, host, restarted);

    second.proc.kill('SIGTERM');
    assert.equal(await second.exited, 0);
    assert.deepEqual(childrenOfHost(host), [], 'adopted children are stopped with the launcher');
    await recordedAs(bus, host, []);
  });
});
