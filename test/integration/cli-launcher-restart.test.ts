import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Bus, LifecycleEvent } from '../../bus/index.js';
import type { Launcher } from '../../services/launcher/launcher.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { runCli } from '../support/cli.js';
import { child, collectEvents, Kind, startLauncher } from '../support/launcher.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const HOSTS = ['roll-a', 'roll-b', 'roll-c'];

const api = (readiness: object, readyTimeoutSeconds = 20) => ({
  command: process.execPath,
  args: [child('service'), '--grpc'],
  instances: 1,
  port: {},
  readiness,
  readyTimeoutSeconds,
});

/** `halyard launcher …` as an operator runs it; resolves whatever the exit code. */
const cli = (cluster: NatsCluster, ...args: string[]) => runCli(cluster, ['launcher', ...args]);

const first = (events: LifecycleEvent[], kind: number, after = 0) =>
  events.find((e) => e.kind === kind && Number(e.occurredAtMs) >= after);

describe('halyard launcher restart across hosts', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  const launchers: Launcher[] = [];
  const busLogs = captureLogs('warn');

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-rolling', busLogs.logger));
  });
  after(async () => {
    for (const launcher of launchers) await launcher.shutdown();
    await bus?.close();
    await cluster?.close();
  });

  test('goes host by host, each next once the last is ready again, and skips hosts without it', async () => {
    const live = await Promise.all(HOSTS.map((host) => collectEvents(bus, host)));
    for (const host of HOSTS) {
      const components = host === 'roll-c' ? {} : { api: api({ grpc: {} }) };
      launchers.push((await startLauncher(bus, host, { components })).launcher);
    }
    await until('both instances ready', () =>
      live.slice(0, 2).every((l) => first(l.events, Kind.READY)),
    );
    const since = Date.now();
    const { code, stdout, stderr } = await cli(cluster, 'restart', 'api');
    assert.equal(code, 0, `${stdout}${stderr}`);
    assert.match(stdout, /roll-a: ok/);
    assert.match(stdout, /roll-b: ok/);
    assert.doesNotMatch(stdout, /roll-c/, 'a host that runs no api is not asked');
    const [a, b] = [live[0]!.events, live[1]!.events];
    const aReady = first(a, Kind.READY, since);
    const bStopping = first(b, Kind.STOPPING, since);
    assert.ok(aReady && bStopping, 'both restarted');
    assert.ok(
      Number(aReady.occurredAtMs) <= Number(bStopping.occurredAtMs),
      `roll-b was stopped (${bStopping.occurredAtMs}) before roll-a was ready again (${aReady.occurredAtMs})`,
    );
    for (const l of live) await l.stop();
  });

  test('halts at the first host whose restart fails and names the hosts not asked', async () => {
    for (const launcher of launchers.splice(0)) await launcher.shutdown();
    const hosts = ['halt-a', 'halt-b'];
    const live = await Promise.all(hosts.map((host) => collectEvents(bus, host)));
    // halt-a's instance never becomes ready (no such registration): its restart aborts.
    launchers.push(
      (
        await startLauncher(bus, 'halt-a', {
          components: { api: api({ registered: { serviceId: 'never-registered' } }, 1) },
        })
      ).launcher,
      (await startLauncher(bus, 'halt-b', { components: { api: api({ grpc: {} }) } })).launcher,
    );
    await until('halt-b ready', () => first(live[1]!.events, Kind.READY));
    const since = Date.now();
    const { code, stdout } = await cli(cluster, 'restart', 'api');
    assert.notEqual(code, 0);
    assert.match(stdout, /halt-a: error ABORTED/);
    assert.match(stdout, /halted: not asked, after the failure above: halt-b/);
    assert.equal(first(live[1]!.events, Kind.STOPPING, since), undefined, 'halt-b untouched');
    for (const l of live) await l.stop();
  });
});
