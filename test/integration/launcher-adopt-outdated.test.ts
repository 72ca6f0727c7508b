/**
 * A launcher in `bus` mode with `recovery: adopt`, killed with SIGKILL while a new mesh
 * configuration version is published: when it starts again it adopts its children, sees
 * that they run what the previous version started, and replaces them like any rollout
 * (one at a time, each step in the host's rollout record); it reports the new version
 * applied only once no adopted child of the old one runs. When a replacement fails, the
 * instance goes back to the process it was started as, and the host reports why.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import {
  type Bus,
  type HostChildren,
  Keys,
  type KvStore,
  LaunchersBucket,
  type LocalView,
  type MeshConfigStore,
  type Rollout,
  RolloutsBucket,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { environmentValueOf } from '../../services/common/proc.js';
import { LogIds } from '../../services/launcher/log-ids.js';
import { startBusCluster } from '../support/bus-cluster.js';
import {
  child,
  listening,
  pidAlive,
  type Running,
  readyPids,
  runLauncher,
  writeConfig,
} from '../support/launcher.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const HostState = halyard.launcher.v1.HostRollout.State;

/** The component version a child was started with (its HALYARD_COMPONENT_VERSION). */
const componentVersion = (pid: number) => environmentValueOf(pid, 'HALYARD_COMPONENT_VERSION');

describe('a launcher that adopts children a newer configuration version changed', () => {
  const host = `host-adopt-${process.pid}`;
  let cluster: NatsCluster;
  let bus: Bus;
  let store: MeshConfigStore;
  let rollouts: LocalView<Rollout>;
  let launchersStore: KvStore<HostChildren>;
  const busLogs = captureLogs('warn');
  const started: Running[] = [];
  let args: string[];

  async function recordedChildren() {
    return (await launchersStore.get(Keys.launcherChildren(host)))?.value;
  }

  const run = async () => {
    const r = runLauncher(args);
    started.push(r);
    await listening(r);
    return r;
  };

  const kill = async (r: Running) => {
    r.proc.kill('SIGKILL');
    await r.exited;
  };

  /**
   * Publishes the service at `version`; `broken`: its process exits at once; `force`:
   * every instance restarts, changed or not (`config apply --force`).
   */
  const publish = async (version: string, broken = false, force = false) => {
    const latest = await store.latest();
    const content = stringify({
      recovery: 'adopt',
      rollout: { healthySeconds: 1, stepTimeoutSeconds: 30 },
      components: {
        svc: {
          command: process.execPath,
          args: broken ? ['-e', 'process.exit(3)'] : [child('service')],
          version,
          instances: 2,
          port: {},
          // biome-ignore lint/suspicious/noTemplateCurlyInString: the launcher's port placeholder
          readiness: { http: 'http://127.0.0.1:${PORT}/healthz' },
          drainSeconds: 0,
          stop: { timeoutSeconds: 5 },
          restart: { intervals: [1], minUptimeSeconds: 30 },
        },
      },
    });
    const published = await store.publish({
      basedOn: latest?.version ?? 0,
      content,
      author: 'adopt-test',
      summary: `svc ${version}`,
      restartUnchanged: force,
    });
    return published.version;
  };

  const entry = (version: number) =>
    rollouts.get(Keys.rollout(version))?.hosts.find((h) => h.hostId === host);

  /**
   * Every state this host writes for `version` from now on, in order, each with the
   * pids of `watched` still alive when it was written.
   */
  const follow = (version: number, watched: readonly number[]) => {
    const states: Array<{ state: number; reason: string; alive: number[] }> = [];
    const stop = rollouts.onChange((change) => {
      if (change.op !== 'put' || change.key !== Keys.rollout(version)) return;
      const mine = change.value.hosts.find((h) => h.hostId === host);
      const last = states.at(-1);
      if (!mine || (last?.state === mine.state && last.reason === mine.reason)) return;
      states.push({ state: mine.state, reason: mine.reason, alive: watched.filter(pidAlive) });
    });
    return { states, stop };
  };

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-adopt-outdated', busLogs.logger));
    store = bus.meshConfig();
    rollouts = (await bus.store(RolloutsBucket)).view();
    await rollouts.ready;
    launchersStore = await bus.store(LaunchersBucket);
    const file = await writeConfig({ hostId: host });
    args = ['--config', file, '--nats', cluster.servers.join(','), '--mesh-config', 'bus'];
  });
  after(async () => {
    for (const r of started) if (r.proc.exitCode === null) r.proc.kill('SIGTERM');
    await Promise.all(started.map((r) => r.exited));
    rollouts?.stop();
    await bus?.close();
    await cluster?.close();
  });

  let v2Pids: number[] = [];

  test('adopted children of an older version are rolled one at a time before the version is reported applied', async () => {
    const v1 = await publish('1');
    const first = await run();
    const v1Pids = await until('version 1 ready', () => readyPids(bus, host), 30_000, 100);
    await until('version 1 applied', () => entry(v1)?.state === HostState.APPLIED, 30_000);
    // Each child is recorded with what it was started as.
    await until(
      'children recorded with their version',
      async () => {
        const children = (await recordedChildren())?.children ?? [];
        return (
          children.length === 2 &&
          children.every((c) => c.configVersion === v1 && /^[0-9a-f]{64}$/.test(c.specDigest))
        );
      },
      15_000,
      100,
    );
    await kill(first);

    const v2 = await publish('2');
    const seen = follow(v2, v1Pids);
    const second = await run();
    await until('version 2 applied', () => entry(v2)?.state === HostState.APPLIED, 90_000);
    seen.stop();
    v2Pids = await until('version 2 ready', () => readyPids(bus, host), 30_000, 100);

    const adopted = second.lines.filter((l) => l.msgId === LogIds.leftoverAdopted);
    assert.equal(adopted.length, 2, 'both children were adopted, not restarted at once');
    const outdated = second.lines.filter((l) => l.msgId === LogIds.adoptedOutdated);
    assert.deepEqual(outdated.map((l) => l.instance).sort(), [1, 2]);
    assert.ok(outdated.every((l) => l.configVersion === v1));

    const steps = seen.states.filter((s) => s.state === HostState.ROLLING).map((s) => s.reason);
    assert.deepEqual(
      steps.filter((r) => r !== 'starting'),
      ['svc#1 (1/2)', 'svc#2 (2/2)'],
      'one instance at a time, counted in the rollout record',
    );
    const applied = seen.states.filter((s) => s.state === HostState.APPLIED);
    assert.equal(applied.length, 1);
    assert.equal(seen.states.at(-1), applied[0], 'reported applied after the steps, not before');
    assert.equal(applied[0]!.reason, '2 instance(s) replaced');
    assert.deepEqual(applied[0]!.alive, [], 'no child of version 1 runs when version 2 is applied');

    assert.ok(v2Pids.every((pid) => !v1Pids.includes(pid)));
    assert.deepEqual(v2Pids.map(componentVersion), ['2', '2']);
    await until(
      'the new children recorded with version 2',
      async () => {
        const children = (await recordedChildren())?.children ?? [];
        return (
          children.length === 2 &&
          children.every((c) => c.configVersion === v2 && v2Pids.includes(c.pid))
        );
      },
      15_000,
      100,
    );
    await kill(second);
  });

  test('a failed replacement of an adopted child goes back to what it was started with', async () => {
    assert.equal(v2Pids.length, 2, 'runs after the first test');
    const v3 = await publish('3', true);
    const third = await run();
    const failed = await until(
      'version 3 failed',
      () => entry(v3)?.state === HostState.FAILED && entry(v3),
      90_000,
    );
    assert.match(failed.reason, /svc#1 ended before it was ready/);
    assert.match(failed.reason, /runs version 2 again/);
    const pids = await until(
      'both instances ready',
      async () => {
        const ready = await readyPids(bus, host);
        return ready && ready[0] !== v2Pids[0] && ready;
      },
      30_000,
      100,
    );
    assert.equal(componentVersion(pids[0]!), '2', 'svc#1 runs version 2 again');
    assert.equal(pids[1], v2Pids[1], 'svc#2, after the halt, is untouched');
    third.proc.kill('SIGTERM');
    assert.equal(await third.exited, 0);
  });

  test('unchanged adopted children are kept; a version published with --force replaces them', async () => {
    const v4 = await publish('4');
    const fourth = await run();
    const v4Pids = await until('version 4 ready', () => readyPids(bus, host), 30_000, 100);
    await until('version 4 applied', () => entry(v4)?.state === HostState.APPLIED, 30_000);
    await kill(fourth);

    // Nothing changed while it was down: the same processes, the version applied at once.
    const fifth = await run();
    const { launcherId } = fifth.lines.find((l) => l.msgId === LogIds.listening)!;
    await until('version 4 applied again', () => entry(v4)?.launcherId === launcherId, 30_000);
    assert.equal(entry(v4)?.state, HostState.APPLIED);
    assert.deepEqual(await until('ready', () => readyPids(bus, host), 30_000, 100), v4Pids);
    assert.ok(!fifth.lines.some((l) => l.msgId === LogIds.adoptedOutdated));
    await kill(fifth);

    const v5 = await publish('4', false, true);
    const seen = follow(v5, v4Pids);
    const sixth = await run();
    await until('version 5 applied', () => entry(v5)?.state === HostState.APPLIED, 90_000);
    seen.stop();
    const applied = seen.states.at(-1)!;
    assert.equal(applied.reason, '2 instance(s) replaced');
    assert.deepEqual(applied.alive, [], 'every child started before version 5 was replaced');
    const pids = await until('version 5 ready', () => readyPids(bus, host), 30_000, 100);
    assert.ok(pids.every((pid) => !v4Pids.includes(pid)));
    sixth.proc.kill('SIGTERM');
    assert.equal(await sixth.exited, 0);
  });
});
