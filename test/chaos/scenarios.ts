/**
 * The chaos scenarios: each runs load through both gateways and acknowledged writes to
 * the bus, injects one fault, ends it (a killed host powers up again, a cut link heals;
 * a killed process is the launchers' to restart), waits until the deployment is whole
 * again, and measures what the table row reports.
 *
 * Definitions:
 * - failed in flight: a failed call that had started before the fault (it may have been
 *   on the killed process or link); every other failure is a missed goal;
 * - p99 during: of the calls started between the fault and full recovery;
 * - seconds to full recovery: from the end of the fault (the host back, the link healed,
 *   the process killed) until every launcher reports every instance READY and every
 *   greeter and discovery replica is UP in the registry;
 * - sticky users moved without need: users answered during or after the fault by another
 *   instance than before it although their instance was not hit by the fault; and,
 *   after recovery, users the two gateways route to different instances.
 */
import { Buckets, kvStream } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { commandLineOf } from '../../services/common/proc.js';
import { sleep } from '../../services/common/sleep.js';
import type { MultiHost } from '../support/multi-host.js';
import { until } from '../support/wait.js';
import { type CallRecord, greeterClient, Load, sayHello, Writer } from './load.js';

const { State } = halyard.launcher.v1.ProcessStatus;

export interface Row {
  readonly scenario: string;
  readonly calls: number;
  readonly failed: number;
  readonly failedInFlight: number;
  readonly p99Ms: number;
  /** Undefined when the deployment was not whole again in time. */
  readonly recoverySeconds: number | undefined;
  readonly writesLost: number;
  readonly stickyMovedWithoutNeed: number;
  /** What the row's figures do not say: goals missed and why, orphans, duplicates. */
  readonly notes: string[];
}

export interface ScenarioOptions {
  /** How long load runs before the fault. */
  readonly warmupSeconds?: number;
  readonly recoveryTimeoutSeconds?: number;
  readonly users?: number;
  readonly roundRobin?: number;
}

interface Fault {
  /** Greeter instance ids the fault hits: their users may move. */
  readonly hit: readonly string[];
  /** Ends the fault (power back, link healed); resolves when it is ended. */
  readonly end: () => Promise<void>;
}

let bucketSeq = 0;

/** Runs `inject` under load and measures; `inject` returns what it hit and how to end it. */
export async function runScenario(
  deployment: MultiHost,
  scenario: string,
  inject: () => Promise<Fault>,
  options: ScenarioOptions = {},
  check?: () => Promise<string[]>,
): Promise<Row> {
  const notes: string[] = [];
  const missing = await deployment.missing();
  if (missing) await deployment.waitFullyReady((options.recoveryTimeoutSeconds ?? 120) * 1000);
  const writer = await Writer.start(deployment, `chaos_${process.pid}_${bucketSeq++}`);
  const load = await Load.start(deployment, {
    roundRobin: options.roundRobin ?? 3,
    users: options.users ?? 12,
    pauseMs: 20,
  }).catch(async (err: unknown) => {
    await writer.close();
    throw err;
  });
  let recoveredAt: number | undefined;
  let faultAt = 0;
  let faultEndAt = 0;
  try {
    await sleep((options.warmupSeconds ?? 3) * 1000);
    faultAt = Date.now();
    const fault = await inject();
    await fault.end();
    faultEndAt = Date.now();
    try {
      await deployment.waitFullyReady((options.recoveryTimeoutSeconds ?? 120) * 1000);
      recoveredAt = Date.now();
    } catch (err) {
      notes.push(`not whole again: ${(err as Error).message}`);
    }
    // Load goes on for a while on the whole deployment.
    await sleep(3000);
    await load.stop();
    await writer.stop();
    const calls = load.calls;
    const failed = calls.filter((c) => c.error !== undefined);
    const failedInFlight = failed.filter((c) => c.start < faultAt);
    const during = calls
      .filter((c) => c.start >= faultAt && c.start <= (recoveredAt ?? Date.now()))
      .map((c) => c.end - c.start)
      .sort((a, b) => a - b);
    const p99Ms = during[Math.min(during.length - 1, Math.floor(during.length * 0.99))] ?? 0;
    const moved = movedWithoutNeed(calls, faultAt, fault.hit);
    const split = await gatewaysDisagree(deployment, options.users ?? 12);
    if (split > 0) notes.push(`${split} sticky users routed differently by the two gateways`);
    const beyond = failed.length - failedInFlight.length;
    if (beyond > 0) {
      const codes = countBy(failed.filter((c) => c.start >= faultAt).map((c) => c.error ?? ''));
      notes.push(`missed: ${beyond} calls failed beyond those in flight (${codes})`);
    }
    if (check) notes.push(...(await check()));
    const writesLost = await writer.lost();
    if (writesLost > 0)
      notes.push(`missed: ${writesLost} of ${writer.count} acknowledged writes lost`);
    return {
      scenario,
      calls: calls.length,
      failed: failed.length,
      failedInFlight: failedInFlight.length,
      p99Ms,
      recoverySeconds:
        recoveredAt === undefined ? undefined : Math.round((recoveredAt - faultEndAt) / 100) / 10,
      writesLost,
      stickyMovedWithoutNeed: moved + split,
      notes,
    };
  } finally {
    await load.stop();
    await writer.close();
  }
}

/** Users answered after `faultAt` by another instance than their last one before, not hit. */
function movedWithoutNeed(calls: readonly CallRecord[], faultAt: number, hit: readonly string[]) {
  const before = new Map<string, string>();
  const moved = new Set<string>();
  for (const c of calls) {
    if (!c.user || !c.instanceId) continue;
    if (c.start < faultAt) {
      before.set(c.user, c.instanceId);
      continue;
    }
    const was = before.get(c.user);
    if (was && !hit.includes(was) && c.instanceId !== was) moved.add(c.user);
  }
  return moved.size;
}

/** Sticky users whom gateway 1 and gateway 2 send to different instances. */
async function gatewaysDisagree(deployment: MultiHost, users: number): Promise<number> {
  const [one, two] = deployment.gatewayAddresses.map((a) => greeterClient([a]));
  let split = 0;
  try {
    for (let u = 0; u < users; u++) {
      const token = await deployment.token(`user-${u}`);
      const [a, b] = await Promise.all([sayHello(one!, token), sayHello(two!, token)]);
      if (a.instanceId !== b.instanceId) split++;
    }
  } finally {
    one!.close();
    two!.close();
  }
  return split;
}

function countBy(values: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${k} ×${n}`).join(', ');
}

const greetersOf = (host: number) => [`greeter-host-${host}-1`];

/** kill -9 of every process of host `index`; it powers up again after `downSeconds`. */
export function killHostScenario(
  deployment: MultiHost,
  index: number,
  options: ScenarioOptions & { downSeconds?: number } = {},
): Promise<Row> {
  return runScenario(
    deployment,
    `kill -9 of host ${index} (down ${options.downSeconds ?? 10} s)`,
    async () => {
      await deployment.killHost(index);
      return {
        hit: greetersOf(index),
        end: async () => {
          await sleep((options.downSeconds ?? 10) * 1000);
          deployment.restartHost(index);
        },
      };
    },
    options,
  );
}

/** Host `index` cut off for `seconds`, then healed. */
export function partitionScenario(
  deployment: MultiHost,
  index: number,
  seconds: number,
  options: ScenarioOptions = {},
): Promise<Row> {
  return runScenario(
    deployment,
    `partition of host ${index} for ${seconds} s`,
    async () => {
      deployment.cutHost(index);
      return {
        hit: greetersOf(index),
        end: async () => {
          await sleep(seconds * 1000);
          deployment.healHost(index);
        },
      };
    },
    options,
  );
}

/** The pid of `component` on host `index`, from its launcher. */
async function pidOf(deployment: MultiHost, index: number, component: string): Promise<number> {
  const status = await deployment.launcherStatus();
  const p = status
    .find((s) => s.hostId === `host-${index}`)
    ?.processes.find((x) => x.component === component && x.state === State.READY);
  if (!p?.pid) throw new Error(`no READY ${component} on host-${index}`);
  return p.pid;
}

/** kill -9 of the gateway of host `index`; its launcher starts it again. */
export function killGatewayScenario(
  deployment: MultiHost,
  index: number,
  options: ScenarioOptions = {},
): Promise<Row> {
  return runScenario(
    deployment,
    `kill -9 of the gateway of host ${index}`,
    async () => {
      process.kill(await pidOf(deployment, index, 'gateway'), 'SIGKILL');
      return { hit: [], end: async () => {} };
    },
    options,
  );
}

/** kill -9 of the NATS node leading `bucket`'s stream; started again after 5 s. */
export function killBucketLeaderScenario(
  deployment: MultiHost,
  bucket: 'registry' | 'affinity',
  options: ScenarioOptions = {},
): Promise<Row> {
  let node = '?';
  return runScenario(
    deployment,
    `kill -9 of the NATS leader of the ${bucket} bucket`,
    async () => {
      const streams = await (await deployment.bus()).streams();
      const stream = kvStream(Buckets[bucket]);
      node = streams.find((s) => s.name === stream)?.leader ?? '?';
      const index = Number(/^n(\d)$/.exec(node)?.[1]);
      if (!index) throw new Error(`${stream} has no leader now`);
      deployment.killNats(index);
      return {
        hit: [],
        end: async () => {
          await sleep(5000);
          deployment.startNats(index);
        },
      };
    },
    options,
    async () => [`its leader was ${node}`],
  );
}

/**
 * kill -9 of host `index`'s launcher; started again, it adopts its children: afterwards
 * every component process of the host is one its launcher reports (no orphan) and each
 * instance runs once (no duplicate).
 */
export function killLauncherScenario(
  deployment: MultiHost,
  index: number,
  options: ScenarioOptions = {},
): Promise<Row> {
  return runScenario(
    deployment,
    `kill -9 of the launcher of host ${index}, restarted`,
    async () => {
      const pid = deployment.launcherPid(index);
      if (!pid) throw new Error(`no launcher on host-${index}`);
      process.kill(pid, 'SIGKILL');
      await until('the launcher gone', () => deployment.launcherPid(index) === undefined, 5000);
      deployment.startLauncher(index);
      return { hit: [], end: async () => {} };
    },
    options,
    async () => {
      const { orphans, duplicates } = await adoption(deployment, index);
      return [
        `${orphans} orphans, ${duplicates} duplicates${orphans + duplicates > 0 ? ' (missed)' : ''}`,
      ];
    },
  );
}

/**
 * `halyard launcher restart greeter` as the operator on host 1: host by host, one
 * instance at a time, each next once the last is ready and registered again. Every
 * greeter is restarted, so every sticky user may move.
 */
export function rollingRestartScenario(
  deployment: MultiHost,
  options: ScenarioOptions = {},
): Promise<Row> {
  return runScenario(
    deployment,
    'rolling restart of the greeters across hosts',
    async () => {
      const result = await deployment.halyard(1, 'operator', ['launcher', 'restart', 'greeter']);
      if (result.code !== 0) {
        throw new Error(
          `launcher restart failed (${result.code}): ${result.stdout}${result.stderr}`,
        );
      }
      return { hit: [1, 2, 3].flatMap(greetersOf), end: async () => {} };
    },
    options,
  );
}

/** Component processes of host `index` its launcher does not report, and instances running twice. */
export async function adoption(deployment: MultiHost, index: number) {
  const status = await deployment.launcherStatus();
  const reported = new Set(
    status.find((s) => s.hostId === `host-${index}`)?.processes.map((p) => p.pid) ?? [],
  );
  const components = deployment
    .host(index)
    .pids()
    .map((pid) => ({ pid, main: /services\/(\w+)\/main\.ts/.exec(commandLine(pid))?.[1] }))
    .filter((p) => p.main !== undefined && p.main !== 'launcher');
  const orphans = components.filter((p) => !reported.has(p.pid)).length;
  const perComponent = countMap(components.map((p) => p.main ?? ''));
  const duplicates = [...perComponent.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0);
  return { orphans, duplicates };
}

function commandLine(pid: number): string {
  return commandLineOf(pid)?.replaceAll('\0', ' ') ?? '';
}

function countMap(values: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return counts;
}

/**
 * Every NATS node stopped (SIGTERM) and started again, one after another, each next one
 * only once every stream has a leader and current followers again.
 */
export function restartNatsOneByOneScenario(
  deployment: MultiHost,
  options: ScenarioOptions = {},
): Promise<Row> {
  return runScenario(
    deployment,
    'NATS nodes restarted one after another',
    async () => ({
      hit: [],
      end: async () => {
        for (const host of deployment.hosts.hosts) {
          await deployment.stopNats(host.index);
          deployment.startNats(host.index);
          await until(
            'every stream led and current',
            () => streamsHealthy(deployment),
            60_000,
            500,
          );
        }
      },
    }),
    options,
  );
}

async function streamsHealthy(deployment: MultiHost): Promise<boolean> {
  try {
    const streams = await (await deployment.bus()).streams();
    return streams.every(
      (s) => s.replicas < 3 || (s.leader && s.followers.every((f) => f.current)),
    );
  } catch {
    return false;
  }
}

/** Every NATS node killed (-9) at once, then all started again: the bus is gone meanwhile. */
export function restartNatsAllAtOnceScenario(
  deployment: MultiHost,
  options: ScenarioOptions = {},
): Promise<Row> {
  return runScenario(
    deployment,
    'all NATS nodes killed at once, started again',
    async () => {
      for (const host of deployment.hosts.hosts) deployment.killNats(host.index);
      return {
        hit: [],
        end: async () => {
          await sleep(2000);
          for (const host of deployment.hosts.hosts) deployment.startNats(host.index);
          await until(
            'every stream led and current',
            () => streamsHealthy(deployment),
            90_000,
            500,
          );
        },
      };
    },
    options,
  );
}
