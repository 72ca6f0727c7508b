import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Bus, LifecycleEvent } from '../../bus/index.js';
import { LogIds } from '../../services/launcher/log-ids.js';
import { launcherMetrics } from '../../services/launcher/metrics.js';
import { startBusCluster } from '../support/bus-cluster.js';
import {
  child,
  collectEvents,
  groupMembers,
  Kind,
  kindName,
  pidAlive,
  State,
  startLauncher,
} from '../support/launcher.js';
import { captureLogs } from '../support/logs.js';
import { counterValue } from '../support/metrics.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const node = process.execPath;

/** The steady service every test runs beside the one under test: it must never be disturbed. */
const steady = {
  command: node,
  args: [child('service')],
  port: {},
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the launcher's port placeholder
  readiness: { http: 'http://127.0.0.1:${PORT}/healthz' },
};

describe('launcher supervision', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  const busLogs = captureLogs('warn');

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-launcher', busLogs.logger));
  });
  after(async () => {
    await bus?.close();
    await cluster?.close();
  });

  test('restarts follow the intervals, give up after the last; events are on the stream in order, once each', async () => {
    const host = 'host-restart';
    const live = await collectEvents(bus, host);
    const { launcher, logs } = await startLauncher(bus, host, {
      components: {
        steady,
        crash: {
          command: node,
          args: [child('exit-at-once'), '3'],
          restart: { intervals: [0.2, 0.4, 0.6], minUptimeSeconds: 60 },
        },
      },
    });
    try {
      await until('crash gave up', () => live.events.some((e) => e.kind === Kind.GAVE_UP), 15_000);
      const crash = live.events.filter((e) => e.component === 'crash');
      assert.deepEqual(
        crash.map((e) => kindName(e.kind)),
        [
          // No readiness probe: a running process is ready at once.
          ...['STARTING', 'STARTED', 'READY', 'EXITED', 'RESTARTING'],
          ...['STARTING', 'STARTED', 'READY', 'EXITED', 'RESTARTING'],
          ...['STARTING', 'STARTED', 'READY', 'EXITED', 'RESTARTING'],
          ...['STARTING', 'STARTED', 'READY', 'EXITED', 'GAVE_UP'],
        ],
      );
      const restarting = crash.filter((e) => e.kind === Kind.RESTARTING);
      assert.deepEqual(
        restarting.map((e) => [e.attempt, e.delayMs]),
        [
          [1, 200],
          [2, 400],
          [3, 600],
        ],
      );
      for (const r of restarting) {
        const exited = crash[crash.indexOf(r) - 1]!;
        const next = crash[crash.indexOf(r) + 1]!;
        assert.equal(exited.exitCode, 3);
        // Lower bound only: the next start waits at least the interval after the exit.
        assert.ok(
          next.occurredAtMs - exited.occurredAtMs >= r.delayMs - 1,
          `gap before attempt ${r.attempt}`,
        );
      }
      assert.equal(crash.at(-1)?.attempt, 4);

      // The failing component did not disturb the other one or the launcher.
      const steadyEvents = live.events.filter((e) => e.component === 'steady');
      assert.deepEqual(
        steadyEvents.map((e) => kindName(e.kind)),
        ['STARTING', 'STARTED', 'READY'],
      );
      const display = launcher.display();
      const byComponent = (c: string) => display.processes.find((p) => p.component === c)!;
      assert.equal(byComponent('steady').state, State.READY);
      assert.equal(byComponent('steady').pid, steadyEvents[1]!.pid);
      assert.equal(byComponent('crash').state, State.GAVE_UP);
      assert.equal(byComponent('crash').restarts, 3);

      // Once each, in the order the launcher logged them; a later subscriber replays the same.
      const logged = logs.lines.filter((l) => typeof l.eventId === 'string').map((l) => l.eventId);
      const ids = live.events.map((e) => e.eventId);
      assert.deepEqual(ids, logged);
      assert.equal(new Set(ids).size, ids.length);
      const later = await collectEvents(bus, host);
      await until('later subscriber replayed', () => later.events.length >= ids.length);
      assert.deepEqual(
        later.events.map((e) => e.eventId),
        ids,
      );
      await later.stop();
      assert.equal(await counterValue(launcherMetrics.restarts, { component: 'crash' }), 3);

      // An operator's start forgets the failures: the policy begins again at attempt 1.
      const before = live.events.length;
      await launcher.start({ component: 'crash', instance: 0 });
      const again = await until('restarting again', () =>
        live.events.slice(before).find((e) => e.kind === Kind.RESTARTING),
      );
      assert.deepEqual([again.attempt, again.delayMs], [1, 200]);

      // The stderr of the child came through as tagged log lines.
      const stderr = logs.withId(LogIds.childStderr);
      assert.ok(
        stderr.some(
          (l) => l.component === 'crash' && l.instance === 1 && l.msg === 'failing on purpose',
        ),
      );
    } finally {
      await launcher.shutdown();
      await live.stop();
    }
  });

  test('the failure count resets after the minimum uptime', async () => {
    const host = 'host-reset';
    const live = await collectEvents(bus, host);
    const { launcher } = await startLauncher(bus, host, {
      components: {
        flaky: {
          command: node,
          args: [child('exit-later'), '300'],
          // Without the reset the second failure would wait 30 s.
          restart: { intervals: [0.1, 30], minUptimeSeconds: 0.2 },
        },
      },
    });
    try {
      const restarting = () => live.events.filter((e) => e.kind === Kind.RESTARTING);
      await until('three restarts', () => restarting().length >= 3, 10_000);
      for (const r of restarting().slice(0, 3)) assert.deepEqual([r.attempt, r.delayMs], [1, 100]);
      const exits = live.events.filter((e) => e.kind === Kind.EXITED);
      assert.ok(exits.every((e) => e.uptimeMs >= 200));
    } finally {
      await launcher.shutdown();
      await live.stop();
    }
  });

  test('a command that does not exist and a port already taken: clear events, then give-up', async () => {
    const host = 'host-bad';
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const takenPort = (taken.address() as { port: number }).port;
    const live = await collectEvents(bus, host);
    const { launcher, logs } = await startLauncher(bus, host, {
      components: {
        steady,
        missing: {
          command: '/nonexistent/halyard-no-such-command',
          restart: { intervals: [0.1, 0.1], minUptimeSeconds: 60 },
        },
        clash: {
          command: node,
          args: [child('service')],
          port: { base: takenPort },
          restart: { intervals: [0.1, 0.1], minUptimeSeconds: 60 },
        },
      },
    });
    try {
      const gaveUp = (c: string) =>
        live.events.find((e) => e.component === c && e.kind === Kind.GAVE_UP);
      await until('both gave up', () => gaveUp('missing') && gaveUp('clash'), 15_000);
      const exitsOf = (c: string) =>
        live.events.filter((e: LifecycleEvent) => e.component === c && e.kind === Kind.EXITED);
      assert.equal(exitsOf('missing').length, 3);
      assert.match(exitsOf('missing')[0]!.reason, /ENOENT/);
      assert.match(
        gaveUp('missing')!.reason,
        /failed 3 times in a row; last: not started: .*ENOENT/,
      );
      assert.equal(exitsOf('clash').length, 3);
      assert.equal(exitsOf('clash')[0]!.exitCode, 1);
      assert.equal(exitsOf('clash')[0]!.port, takenPort);
      assert.ok(
        logs
          .withId(LogIds.childStderr)
          .some((l) => l.component === 'clash' && /cannot listen/.test(String(l.msg))),
      );
      const states = Object.fromEntries(
        launcher.display().processes.map((p) => [p.component, p.state]),
      );
      assert.deepEqual(states, {
        steady: State.READY,
        missing: State.GAVE_UP,
        clash: State.GAVE_UP,
      });
    } finally {
      await launcher.shutdown();
      await live.stop();
      taken.close();
    }
  });

  test('stop leaves no process of the group alive, SIGKILL after the timeout', async () => {
    const host = 'host-stop';
    const live = await collectEvents(bus, host);
    const { launcher, logs } = await startLauncher(bus, host, {
      components: {
        stubborn: {
          command: node,
          args: [child('ignore-sigterm')],
          stop: { signal: 'SIGTERM', timeoutSeconds: 0.3 },
        },
      },
    });
    try {
      const grandchild = await until('grandchild started', () => {
        const line = logs
          .withId(LogIds.childStdout)
          .find((l) => /^grandchild \d+$/.test(String(l.msg)));
        return line && Number(String(line.msg).split(' ')[1]);
      });
      const pid = launcher.display().processes[0]!.pid;
      assert.deepEqual(groupMembers(pid).sort(), [pid, grandchild].sort());
      const stoppingAt = Date.now();
      const result = await launcher.stop({ component: 'stubborn', instance: 0 });
      assert.ok(Date.now() - stoppingAt >= 300, 'waited the stop timeout before SIGKILL');
      assert.equal(result.status?.processes[0]?.state, State.STOPPED);
      assert.deepEqual(groupMembers(pid), []);
      assert.equal(pidAlive(grandchild), false);
      await until('stopped event', () => live.events.find((e) => e.kind === Kind.STOPPED));
      const stopped = live.events.find((e) => e.kind === Kind.STOPPED)!;
      assert.equal(stopped.signal, 'SIGKILL');
      assert.match(stopped.reason, /killed after 0.3 s/);
    } finally {
      await launcher.shutdown();
      await live.stop();
    }
  });

  test('dependencies start first (ready before dependents start) and stop last', async () => {
    const host = 'host-deps';
    const live = await collectEvents(bus, host);
    const { launcher } = await startLauncher(bus, host, {
      components: {
        app: { ...steady, dependsOn: ['cache'] },
        cache: steady,
      },
    });
    assert.deepEqual(launcher.supervisor.names(), ['cache', 'app']);
    await until('app ready', () =>
      live.events.some((e) => e.component === 'app' && e.kind === Kind.READY),
    );
    await launcher.shutdown();
    await until('stopped', () => live.events.filter((e) => e.kind === Kind.STOPPED).length === 2);
    const order = live.events
      .filter((e) => [Kind.STARTING, Kind.READY, Kind.STOPPING, Kind.STOPPED].includes(e.kind))
      .map((e) => `${e.component} ${kindName(e.kind)}`);
    assert.deepEqual(order, [
      'cache STARTING',
      'cache READY',
      'app STARTING',
      'app READY',
      'app STOPPING',
      'app STOPPED',
      'cache STOPPING',
      'cache STOPPED',
    ]);
    await live.stop();
  });
});
