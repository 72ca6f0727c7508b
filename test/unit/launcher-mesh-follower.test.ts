import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import pino from 'pino';
import { KeyChangedError, KeyExistsError, type Revisioned, type Rollout } from '../../bus/index.js';
import { validateConfig } from '../../services/common/config.js';
import { launcherConfig } from '../../services/launcher/config.js';
import type { LifecycleRecorder } from '../../services/launcher/lifecycle.js';
import {
  MeshFollower,
  type MeshSpec,
  type MeshVersion,
  type MeshVersions,
  missingFiles,
} from '../../services/launcher/mesh-follower.js';
import {
  HostState,
  RolloutBoard,
  type RolloutRecords,
  RolloutState,
} from '../../services/launcher/rollouts.js';
import { Supervisor } from '../../services/launcher/supervisor.js';
import { until } from '../support/wait.js';

/** The rollouts bucket in memory, with the same compare-and-set rules. */
class MemoryRecords implements RolloutRecords {
  readonly values = new Map<string, Revisioned<Rollout>>();
  private revision = 0;

  async get(key: string) {
    return this.values.get(key);
  }
  async create(value: Rollout) {
    const key = String(value.version);
    if (this.values.has(key)) throw new KeyExistsError('rollouts', key);
    return this.put(key, value);
  }
  async update(value: Rollout, revision: number) {
    const key = String(value.version);
    if (this.values.get(key)?.revision !== revision) {
      throw new KeyChangedError('rollouts', key, revision);
    }
    return this.put(key, value);
  }
  private put(key: string, value: Rollout) {
    this.values.set(key, { key, value: structuredClone(value), revision: ++this.revision });
    return this.revision;
  }
}

/** The configuration versions in memory. */
class MemoryVersions implements MeshVersions {
  private readonly versions: MeshVersion[] = [];
  private readonly watchers = new Set<(v: MeshVersion) => void>();

  publish(content: object, restartUnchanged = false): number {
    const v = {
      version: this.versions.length + 1,
      content: JSON.stringify(content),
      restartUnchanged,
    };
    this.versions.push(v);
    for (const w of this.watchers) w(v);
    return v.version;
  }
  async latest() {
    return this.versions.at(-1);
  }
  async get(version: number) {
    return this.versions[version - 1];
  }
  async watch(onVersion: (v: MeshVersion) => void) {
    const last = this.versions.at(-1);
    if (last) onVersion(last);
    this.watchers.add(onVersion);
    return { stop: async () => void this.watchers.delete(onVersion) };
  }
}

const parse = (content: string, source: string): MeshSpec => {
  const raw = JSON.parse(content) as { components: unknown };
  const { components } = validateConfig(launcherConfig, { components: raw.components }, source);
  return { components, rollout: { healthySeconds: 0.3, stepTimeoutSeconds: 5 } };
};

const logger = pino({ level: 'silent' });
const noRegistry = { isUp: () => false, markDraining: async () => {} };
const recorder = { record() {} } as unknown as LifecycleRecorder;

interface Host {
  readonly supervisor: Supervisor;
  readonly follower: MeshFollower;
  readonly board: RolloutBoard;
  readonly steps: string[];
}

const hosts: Host[] = [];
after(async () => {
  for (const h of hosts) {
    await h.follower.stop();
    await h.supervisor.stopAll('test over');
  }
});

async function startHost(
  hostId: string,
  versions: MeshVersions,
  records: RolloutRecords,
  order: string[],
): Promise<Host> {
  const supervisor = new Supervisor({
    hostId,
    address: '127.0.0.1',
    recorder,
    logger,
    registry: noRegistry,
  });
  const board = new RolloutBoard(records, hostId, `run-${hostId}`, 200);
  const steps: string[] = [];
  // Records the order in which hosts replace instances.
  const original = board.report.bind(board);
  board.report = async (version, state, reason) => {
    if (state === 'ROLLING') order.push(`${hostId} ${reason}`);
    steps.push(`${version} ${state}`);
    return original(version, state, reason);
  };
  let commands: Promise<unknown> = Promise.resolve();
  const follower = new MeshFollower({
    hostId,
    versions,
    parse,
    board,
    supervisor,
    logger,
    prepare: async () => {},
    exclusive: <T>(command: () => Promise<T>) => {
      const run = commands.then(command);
      commands = run.catch(() => undefined);
      return run;
    },
    applied: 0,
    pollMs: 50,
  });
  await follower.start();
  const host = { supervisor, follower, board, steps };
  hosts.push(host);
  return host;
}

/** A tiny HTTP server, ready once it answers on its port. */
const sleeper = (tag: string) => ({
  command: process.execPath,
  args: ['-e', "require('node:http').createServer((q, s) => s.end()).listen(process.env.PORT)"],
  env: { TAG: tag },
  port: { env: 'PORT' },
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the launcher's placeholder
  readiness: { http: 'http://127.0.0.1:${PORT}/' },
  instances: 2,
  stop: { signal: 'SIGTERM', timeoutSeconds: 5 },
});

const pids = (h: Host) =>
  h.supervisor
    .status()
    .filter((p) => p.component === 'greeter')
    .map((p) => p.pid);

const hostStates = (records: MemoryRecords, version: number) =>
  Object.fromEntries(
    (records.values.get(String(version))?.value.hosts ?? []).map((h) => [
      h.hostId,
      HostState[h.state],
    ]),
  );

test('versions roll host by host, a broken one halts at its first instance, a rollback applies at once', async () => {
  const versions = new MemoryVersions();
  const records = new MemoryRecords();
  const order: string[] = [];
  versions.publish({ components: { greeter: sleeper('v1') } });
  const a = await startHost('host-a', versions, records, order);
  const b = await startHost('host-b', versions, records, order);
  await until(
    'both hosts on v1',
    () => a.follower.appliedVersion === 1 && b.follower.appliedVersion === 1,
  );
  assert.deepEqual(hostStates(records, 1), { 'host-a': 'APPLIED', 'host-b': 'APPLIED' });
  assert.deepEqual(order, [], 'a first version starts everything at once');
  const v1Pids = [...pids(a), ...pids(b)];

  // v2 changes the greeter: each host replaces its instances one at a time, host-a first.
  versions.publish({ components: { greeter: sleeper('v2') } });
  await until(
    'both hosts on v2',
    () => a.follower.appliedVersion === 2 && b.follower.appliedVersion === 2,
    20_000,
  );
  assert.deepEqual(order, [
    'host-a greeter#1 (1/2)',
    'host-a greeter#2 (2/2)',
    'host-b greeter#1 (1/2)',
    'host-b greeter#2 (2/2)',
  ]);
  const v2Pids = [...pids(a), ...pids(b)];
  assert.equal(v2Pids.filter((p) => v1Pids.includes(p)).length, 0, 'every instance replaced');
  assert.ok(v2Pids.every((p) => p > 0));

  // v3's greeter exits at once: host-a halts after one instance, host-b keeps waiting.
  order.length = 0;
  const broken = { ...sleeper('v3'), args: ['-e', 'process.exit(3)'] };
  versions.publish({ components: { greeter: broken } });
  await until(
    'v3 halted',
    () => records.values.get('3')?.value.state === RolloutState.HALTED,
    20_000,
  );
  const halted = records.values.get('3')!.value;
  assert.match(
    halted.reason,
    /on host host-a: greeter#1 ended before it was ready .*code 3.*runs version 2 again/,
  );
  await until('host-b waiting for v3', () => hostStates(records, 3)['host-b'] === 'WAITING');
  assert.match(halted.hosts.find((h) => h.hostId === 'host-b')?.reason ?? 'waiting', /./);
  assert.deepEqual(order, ['host-a greeter#1 (1/2)'], 'halted after one step');
  await until('host-a instances ready again', () =>
    a.supervisor.status().every((p) => p.state === 4 /* READY */),
  );
  assert.equal(pids(a)[1], v2Pids[1], 'host-a greeter#2 untouched');
  assert.deepEqual(pids(b), v2Pids.slice(2), "host-b's instances untouched");
  assert.equal(a.follower.appliedVersion, 2);

  // Publishing v2's content again: nothing to replace, both hosts apply it at once.
  const beforeRollback = [...pids(a), ...pids(b)];
  versions.publish({ components: { greeter: sleeper('v2') } });
  await until(
    'both hosts on v4',
    () => a.follower.appliedVersion === 4 && b.follower.appliedVersion === 4,
    20_000,
  );
  assert.deepEqual(hostStates(records, 4), { 'host-a': 'APPLIED', 'host-b': 'APPLIED' });
  assert.deepEqual([...pids(a), ...pids(b)], beforeRollback);
  assert.deepEqual(order, ['host-a greeter#1 (1/2)']);

  // The same content forced (`config apply --force`): every instance restarts, in turn.
  order.length = 0;
  versions.publish({ components: { greeter: sleeper('v2') } }, true);
  await until(
    'both hosts on v5',
    () => a.follower.appliedVersion === 5 && b.follower.appliedVersion === 5,
    20_000,
  );
  assert.deepEqual(order, [
    'host-a greeter#1 (1/2)',
    'host-a greeter#2 (2/2)',
    'host-b greeter#1 (1/2)',
    'host-b greeter#2 (2/2)',
  ]);
  const forcedPids = [...pids(a), ...pids(b)];
  assert.equal(forcedPids.filter((p) => beforeRollback.includes(p)).length, 0, 'all restarted');
});

test('a version that names a missing file is reported by the host, and nothing changes', async () => {
  const versions = new MemoryVersions();
  const records = new MemoryRecords();
  versions.publish({ components: { greeter: sleeper('v1') } });
  const a = await startHost('host-m', versions, records, []);
  await until('host-m on v1', () => a.follower.appliedVersion === 1);
  const before = pids(a);
  const v2 = {
    ...sleeper('v2'),
    env: { TAG: 'v2', SECRET_FILE: '/nonexistent/secret' },
  };
  versions.publish({ components: { greeter: v2, extra: { command: 'no-such-command-here' } } });
  await until('host-m failed v2', () => hostStates(records, 2)['host-m'] === 'FAILED');
  const entry = records.values.get('2')!.value.hosts[0]!;
  assert.match(
    entry.reason,
    /components\.greeter\.env\.SECRET_FILE: no readable file \/nonexistent\/secret/,
  );
  assert.match(entry.reason, /components\.extra\.command: no-such-command-here not found/);
  assert.match(entry.reason, /still runs version 1/);
  assert.deepEqual(pids(a), before);
  assert.deepEqual(a.supervisor.names(), ['greeter']);
});

test('missingFiles finds commands on PATH and by path', async () => {
  const configs = new Map(
    Object.entries(
      validateConfig(
        launcherConfig,
        { components: { ok: { command: 'node' }, abs: { command: process.execPath } } },
        'x',
      ).components,
    ),
  );
  assert.deepEqual(await missingFiles(configs), []);
});

test('an aborted rollout: a host that had not rolled keeps what it runs and says so', async () => {
  const records = new MemoryRecords();
  const a = new RolloutBoard(records, 'a', 'run-a', 0);
  const b = new RolloutBoard(records, 'b', 'run-b', 0);
  // Two hosts that see the way free at once: the compare-and-set lets one of them roll.
  const turns = await Promise.all([a.takeTurn(7), b.takeTurn(7)]);
  assert.equal(turns.filter((t) => t.go).length, 1);
  const rolling = records.values.get('7')!.value.hosts.filter((h) => h.state === HostState.ROLLING);
  assert.equal(rolling.length, 1);
  const [winner, loser] = turns[0]!.go ? [a, b] : [b, a];
  await winner.report(7, 'FAILED', 'x#1 did not become ready');
  assert.equal(records.values.get('7')!.value.state, RolloutState.HALTED);
  assert.deepEqual(await loser.takeTurn(7), {
    go: false,
    why: 'halted',
    detail: `rollout halted on host ${winner.hostId}: x#1 did not become ready`,
  });
  const current = records.values.get('7')!;
  await records.update(
    { ...current.value, state: RolloutState.ABORTED, reason: 'by ops' },
    current.revision,
  );
  assert.deepEqual(await loser.takeTurn(7), {
    go: false,
    why: 'aborted',
    detail: 'rollout aborted (by ops)',
  });
  assert.equal((await loser.entry(7))?.host.state, HostState.SKIPPED);
});
