/**
 * End to end, `halyard up` surviving its own supervisors: under a steady call load through
 * both gateways, kill -9 of the launcher → `up` restarts it, the new launcher adopts every
 * child (no duplicate, no restart), no call fails, and a greeter killed afterwards is
 * restarted by the new launcher; kill -9 of a NATS node → `up` restarts it, it is back in
 * the cluster with every stream replica current, and no call fails. Ctrl-C then stops
 * everything, adopted children included.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type Bus, type LifecycleEvent, Subjects } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { CliLogIds } from '../../services/cli/log.js';
import { monitorJson } from '../../services/cli/nats-monitor.js';
import { serviceDefinition } from '../../services/common/grpc.js';
import { procStat } from '../../services/common/proc.js';
import { ControlCodecsOf } from '../../services/launcher/control.js';
import { LogIds } from '../../services/launcher/log-ids.js';
import { LAUNCHER_MARKER_ENV } from '../../services/launcher/process.js';
import { pidAlive } from '../support/launcher.js';
import { processesWithEnvironment } from '../support/processes.js';
import { freeBasePort, UpProcess } from '../support/up-process.js';
import { until } from '../support/wait.js';

const READY_TIMEOUT_MS = 90_000;
const EXIT_TIMEOUT_MS = 30_000;
/** `up` restarts after 0.5 s; the new launcher replays, adopts and probes. */
const ADOPT_TIMEOUT_MS = 30_000;
/** A greeter killed with -9 is restarted (first restart interval 1 s) and READY again. */
const RESTART_TIMEOUT_MS = 30_000;
/** `up` restarts a node after 0.5 s; it catches up on every stream and rejoins. */
const NODE_BACK_TIMEOUT_MS = 60_000;
/** Each load loop stops after this many calls at most, whatever happens. */
const MAX_CALLS_PER_LOOP = 50_000;
const Kind = halyard.launcher.v1.LifecycleEvent.Kind;
const State = halyard.launcher.v1.ProcessStatus.State;
/** discovery ×2, gateway ×2, cache, greeter ×3. */
const MESH_PROCESSES = 8;

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'halyard-e2e-supervision-'));
let up: UpProcess | undefined;
let bus: Bus | undefined;
const clients: grpc.Client[] = [];

after(async () => {
  for (const c of clients) c.close();
  await bus?.close().catch(() => {});
  up?.kill();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const Greeter = grpc.makeGenericClientConstructor(
  serviceDefinition('demo.greeter.v1.Greeter'),
  'Greeter',
);

function sayHello(client: grpc.Client, name: string): Promise<{ message: string }> {
  const stub = client as unknown as {
    sayHello(
      req: object,
      opts: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, r?: { message: string }) => void,
    ): void;
  };
  return new Promise((resolve, reject) =>
    stub.sayHello({ name }, { deadline: Date.now() + 5000 }, (error, reply) =>
      error || !reply ? reject(error) : resolve(reply),
    ),
  );
}

/** Calls through every gateway, one after another on each, until stopped; counts the outcomes. */
function callLoad(gateways: grpc.Client[]) {
  const counts = { ok: 0, failed: 0 };
  const failures: string[] = [];
  let running = true;
  const loops = gateways.map(async (client, g) => {
    for (let n = 0; running && n < MAX_CALLS_PER_LOOP; n++) {
      try {
        await sayHello(client, `load ${g}/${n}`);
        counts.ok++;
      } catch (error) {
        counts.failed++;
        if (failures.length < 10) failures.push((error as Error).message);
      }
    }
  });
  return {
    counts,
    failures,
    /** Resolves once `more` calls have succeeded from now on (bounded by `timeoutMs`). */
    progressed: (more: number, timeoutMs = 20_000) => {
      const target = counts.ok + more;
      return until(`${more} more calls answered`, () => counts.ok >= target, timeoutMs, 50);
    },
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

test('halyard up restarts a killed launcher (which adopts the mesh) and a killed NATS node, with no failed call', {
  timeout: 300_000,
}, async (t) => {
  const basePort = await freeBasePort();
  const servers = [0, 1, 2].map((i) => `nats://127.0.0.1:${basePort + i}`);
  up = UpProcess.start(dataDir, basePort);
  const upProcess = up;
  const { stdout } = up;
  await up.ready(READY_TIMEOUT_MS);
  const upLog = () => upProcess.log();

  /** The mesh's processes on this machine, found by the launcher's marker and this bus. */
  const meshProcesses = () => {
    const found = processesWithEnvironment({
      [LAUNCHER_MARKER_ENV]: (v) => v.startsWith('local/'),
      HALYARD_NATS: servers.join(','),
    });
    for (const pid of found.keys()) upProcess.seen.add(pid);
    // The launcher's children lead their own process groups; what they start in turn
    // (tsx's esbuild service, say) inherits the marker but not the group leadership.
    return new Map(
      [...found]
        .filter(([pid]) => procStat(pid)?.pgrp === pid)
        .map(([pid, env]) => [pid, env[LAUNCHER_MARKER_ENV]!]),
    );
  };
  const greeterPids = () =>
    [...meshProcesses()]
      .filter(([, marker]) => marker.startsWith('local/greeter/'))
      .map(([pid]) => pid)
      .sort();
  const display = () =>
    bus!.request(Subjects.control('launcher', 'local', 'display'), {}, ControlCodecsOf.display);

  const gatewayAddresses = up.gatewayAddresses();
  assert.equal(gatewayAddresses.length, 2, stdout.join('\n'));
  for (const address of gatewayAddresses) {
    clients.push(new Greeter(address, grpc.credentials.createInsecure()));
  }
  bus = await up.operatorBus('e2e-supervision');
  up.noteProcesses();

  const events: LifecycleEvent[] = [];
  const subscription = await bus.subscribe(
    { kind: 'lifecycle', filter: 'local.>', from: { time: new Date() } },
    ({ event }) => {
      events.push(event);
    },
  );
  const before = meshProcesses();
  assert.equal(before.size, MESH_PROCESSES, `mesh processes: ${[...before.values()]}`);
  const greetersBefore = greeterPids();
  assert.equal(greetersBefore.length, 3);
  const firstLauncher = await display();

  const load = callLoad(clients);
  await load.progressed(20);

  // --- kill -9 of the launcher.
  const launcherPidFile = path.join(dataDir, 'logs', 'launcher.pid');
  const { pid: launcherPid } = JSON.parse(fs.readFileSync(launcherPidFile, 'utf8')) as {
    pid: number;
  };
  assert.ok(pidAlive(launcherPid));
  process.kill(launcherPid, 'SIGKILL');
  const adopted = () =>
    new Set(
      events
        .filter((e) => e.kind === Kind.STARTED && /^adopted from launcher run/.test(e.reason))
        .map((e) => `${e.component}#${e.instance}`),
    );
  await until(
    'every child adopted',
    () => adopted().size === MESH_PROCESSES,
    ADOPT_TIMEOUT_MS,
    100,
  ).catch((error: unknown) => {
    // What the launchers did meanwhile, so that a failure says why.
    t.diagnostic(`adopted: ${[...adopted()].join(' ') || 'none'}; up: ${up!.stderr.slice(-2000)}`);
    t.diagnostic(launcherLog().slice(-40).join('\n'));
    throw error;
  });
  const second = await until(
    'the new launcher reports every process READY',
    async () => {
      const s = await display().catch(() => undefined);
      return (
        s !== undefined &&
        s.launcherId !== firstLauncher.launcherId &&
        s.processes.length === MESH_PROCESSES &&
        s.processes.every((p) => p.state === State.READY) &&
        s
      );
    },
    ADOPT_TIMEOUT_MS,
    200,
  );
  t.diagnostic(`launcher ${second.launcherId} adopted ${adopted().size} processes`);
  await load.progressed(20);
  assert.deepEqual(
    new Map([...meshProcesses()]),
    before,
    'the same processes, adopted: none started twice, none restarted',
  );
  assert.deepEqual(greeterPids(), greetersBefore);
  assert.ok(
    !events.some((e) => e.kind === Kind.STARTING || e.kind === Kind.STOPPING),
    'nothing was started or stopped',
  );
  assert.ok(stdout.some((l) => /launcher\s+restarted \(pid \d+\)/.test(l)));
  assert.ok(upLog().some((l) => l.msgId === CliLogIds.superviseRestarted));
  assert.equal(load.counts.failed, 0, `failed calls: ${load.failures.join('; ')}`);

  // --- a greeter killed afterwards is restarted by the new launcher.
  const victim = second.processes.find((p) => p.component === 'greeter' && p.instance === 2);
  assert.ok(victim && victim.pid > 1);
  const mark = events.length;
  process.kill(victim.pid, 'SIGKILL');
  const restarted = await until(
    'greeter#2 restarted by the new launcher',
    () => {
      const mine = events
        .slice(mark)
        .filter(
          (e) =>
            e.component === 'greeter' && e.instance === 2 && e.launcherId === second.launcherId,
        );
      const ready = mine.find((e) => e.kind === Kind.READY);
      return (
        mine.some((e) => e.kind === Kind.EXITED && e.pid === victim.pid) &&
        mine.some((e) => e.kind === Kind.RESTARTING) &&
        ready !== undefined &&
        ready
      );
    },
    RESTART_TIMEOUT_MS,
    100,
  );
  assert.notEqual(restarted.pid, victim.pid);
  assert.equal(greeterPids().length, 3, 'three greeters, no more');
  await load.progressed(20);
  assert.equal(load.counts.failed, 0, `failed calls: ${load.failures.join('; ')}`);

  // --- kill -9 of a NATS node.
  const node = { name: 'n1', httpPort: basePort + 4001 };
  const nodePidFile = path.join(dataDir, 'nats', node.name, 'nats.pid');
  const nodePid = Number.parseInt(fs.readFileSync(nodePidFile, 'utf8'), 10);
  assert.ok(nodePid > 1 && pidAlive(nodePid));
  process.kill(nodePid, 'SIGKILL');
  const killedAt = Date.now();
  await until(
    `${node.name} back in the cluster, every stream replica current`,
    async () => {
      const newPid = Number.parseInt(fs.readFileSync(nodePidFile, 'utf8'), 10);
      return newPid !== nodePid && pidAlive(newPid) && (await replicasCurrent(basePort, node.name));
    },
    NODE_BACK_TIMEOUT_MS,
    250,
  );
  t.diagnostic(
    `${node.name} back with every replica current ${Date.now() - killedAt} ms after kill -9`,
  );
  // `up` says so once it, too, sees the node routed with an agreed meta leader.
  await until(
    `up reporting ${node.name} restarted`,
    () =>
      upLog().some(
        (l) => l.msgId === CliLogIds.superviseRestarted && l.process === `nats-server ${node.name}`,
      ),
    NODE_BACK_TIMEOUT_MS,
    250,
  );
  await load.progressed(20);
  await load.stop();
  t.diagnostic(`${load.counts.ok} calls answered, ${load.counts.failed} failed`);
  assert.equal(load.counts.failed, 0, `failed calls: ${load.failures.join('; ')}`);
  await subscription.stop();
  await bus.close();
  bus = undefined;
  for (const c of clients.splice(0)) c.close();

  // --- Ctrl-C: everything stops, the adopted children too.
  const meshPids = [...meshProcesses().keys()];
  process.kill(up.pid, 'SIGINT');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    up.exit,
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), EXIT_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  assert.equal(code, 0, `halyard up did not exit cleanly (${code})\n${up.stderr.slice(-3000)}`);
  assert.deepEqual(meshPids.filter(pidAlive), [], 'mesh processes left behind');
  assert.deepEqual([...up.seen].filter(pidAlive), [], 'processes left behind');
  assert.match(up.stderr, /HALX0013I/, 'the mesh was stopped through its launcher');
  // In reverse dependency order, by the new launcher, as its log tells (the lifecycle
  // events say the same; `up` shows those it receives before it closes the bus).
  const stoppedByNewLauncher = fs
    .readFileSync(path.join(dataDir, 'logs', 'launcher.log'), 'utf8')
    .split('\n')
    .flatMap((l) => (l.startsWith('{') ? [JSON.parse(l) as Record<string, unknown>] : []))
    .filter(
      (l) => l.msgId === LogIds.stopped && String(l.eventId).includes(`/${second.launcherId}/`),
    )
    .map((l) => String(l.component));
  assert.equal(stoppedByNewLauncher.length, MESH_PROCESSES, stoppedByNewLauncher.join(' '));
  assert.deepEqual(stoppedByNewLauncher.slice(-2), ['discovery', 'discovery'], 'discovery last');
  up.child.stdout?.destroy();
  up.child.stderr?.destroy();
});

/**
 * Whether `name` is back in the cluster: every replicated stream reports, from its leader,
 * every replica current — `name` among them (or leading). Each node's /jsz reports its own
 * view; only a stream's leader knows whether its followers are current.
 */
/** The launchers' own log lines (not their children's), oldest first. */
function launcherLog(): string[] {
  return fs
    .readFileSync(path.join(dataDir, 'logs', 'launcher.log'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{') && !l.includes(`"msgId":"${LogIds.childStdout}"`));
}

async function replicasCurrent(basePort: number, name: string): Promise<boolean> {
  const servers = ['n0', 'n1', 'n2'];
  const views = await Promise.all(
    servers.map(
      async (_, i) =>
        (await monitorJson(basePort + 4000 + i, '/jsz?accounts=true&streams=true')) as
          | JszWithReplicas
          | undefined,
    ),
  );
  const streams = new Map<string, boolean>();
  for (const [i, jsz] of views.entries()) {
    if (!jsz) return false;
    const server = servers[i];
    for (const account of jsz.account_details ?? []) {
      for (const stream of account.stream_detail ?? []) {
        const cluster = stream.cluster;
        if (!cluster?.replicas) continue;
        if (!streams.has(stream.name)) streams.set(stream.name, false);
        if (cluster.leader !== server) continue;
        const current = cluster.replicas.every((r) => r.current && !r.offline);
        const includes = server === name || cluster.replicas.some((r) => r.name === name);
        streams.set(stream.name, current && includes);
      }
    }
  }
  return streams.size > 0 && [...streams.values()].every(Boolean);
}

/** The parts of `/jsz?accounts=true&streams=true` read here. */
interface JszWithReplicas {
  account_details?: {
    stream_detail?: {
      name: string;
      cluster?: {
        leader?: string;
        replicas?: { name: string; current?: boolean; offline?: boolean }[];
      };
    }[];
  }[];
}
