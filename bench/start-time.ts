/**
 * Start to ready of each component process on a real 3-node cluster: the time from
 * spawning `node <main>` until its admin `/readyz` answers 200 (polled every 5 ms), and
 * the CPU time (user + system) the process used until then, which the machine's other
 * load disturbs less than the wall-clock time,
 * `--runs` times per component and runtime; the machine is shared, so the table gives
 * the median, and with `--runtime both` the two runtimes alternate run by run, so both
 * meet the same load:
 *   js    the built JavaScript (`npm run build`) as deploy/local/mesh.yaml runs it:
 *         node --enable-source-maps --max-semi-space-size=1 dist/…/main.js
 *   tsx   the TypeScript sources compiled at load time: node --import tsx …/main.ts
 * Usage: bash bench/run.sh start-time [--runtime both|js|tsx] [--runs 7]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Bus } from '../bus/index.js';
import { cpuMsOf } from '../services/common/proc.js';
import { sleep } from '../services/common/sleep.js';
import { writeConfig } from '../test/support/launcher.js';
import { NatsCluster } from '../test/support/nats-cluster.js';
import { freePort } from '../test/support/ports.js';

const { values } = parseArgs({
  options: {
    runtime: { type: 'string', default: 'both' },
    runs: { type: 'string', default: '7' },
  },
});
type Runtime = 'js' | 'tsx';
const RUNTIMES: Runtime[] = values.runtime === 'both' ? ['tsx', 'js'] : [values.runtime as Runtime];
if (!RUNTIMES.every((r) => r === 'js' || r === 'tsx'))
  throw new Error('--runtime: both, js or tsx');
const RUNS = Number(values.runs);
const READY_TIMEOUT_MS = 30_000;

/** How a component's entry point is run: with the compiled JS, or under tsx. */
function command(runtime: Runtime, component: string): string[] {
  return runtime === 'js'
    ? ['--enable-source-maps', '--max-semi-space-size=1', `dist/services/${component}/main.js`]
    : ['--import', 'tsx', `services/${component}/main.ts`];
}

/** Each component's flags, with its admin port. */
async function argsOf(component: string, nats: string, admin: number): Promise<string[]> {
  const grpc = `127.0.0.1:${await freePort()}`;
  switch (component) {
    case 'gateway':
      return [
        '--id',
        'gw-bench',
        '--nats',
        nats,
        '--listen',
        grpc,
        '--admin',
        `127.0.0.1:${admin}`,
      ];
    case 'discovery':
      return [
        '--replica-id',
        'd-bench',
        '--nats',
        nats,
        '--grpc-listen',
        grpc,
        '--admin-port',
        `${admin}`,
      ];
    case 'cache':
      return [
        '--id',
        'c-bench',
        '--nats',
        nats,
        '--grpc-port',
        grpc.split(':')[1]!,
        '--admin-port',
        `${admin}`,
      ];
    case 'launcher': {
      const config = await writeConfig({ hostId: 'bench-start', components: {} });
      return ['--config', config, '--nats', nats, '--grpc', grpc, '--admin-port', `${admin}`];
    }
    default:
      throw new Error(`no component ${component}`);
  }
}

interface Start {
  readonly wallMs: number;
  readonly cpuMs: number;
}

async function startToReady(runtime: Runtime, component: string, nats: string): Promise<Start> {
  const admin = await freePort();
  const args = [...command(runtime, component), ...(await argsOf(component, nats, admin))];
  const started = performance.now();
  const child: ChildProcess = spawn(process.execPath, args, {
    stdio: 'ignore',
    env: { ...process.env, HALYARD_LOG_LEVEL: 'warn' },
  });
  const exited = once(child, 'exit');
  try {
    while (performance.now() - started < READY_TIMEOUT_MS) {
      if (child.exitCode !== null) throw new Error(`${component} exited (${child.exitCode})`);
      const ok = await fetch(`http://127.0.0.1:${admin}/readyz`)
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) {
        const wallMs = performance.now() - started;
        const cpuMs = cpuMsOf(child.pid!);
        if (cpuMs === undefined) throw new Error(`${component} gone`);
        return { wallMs, cpuMs };
      }
      await sleep(5);
    }
    throw new Error(`${component} not ready within ${READY_TIMEOUT_MS} ms`);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

const median = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

const cluster = await NatsCluster.start();
try {
  const nats = cluster.servers.join(',');
  const probe = await Bus.connect({
    servers: cluster.servers,
    name: 'bench-start-time',
    logger: pino({ level: 'error' }),
  });
  const version = probe.server.version;
  await probe.close();
  console.log(
    `node ${process.version}; nats-server ${version}, 3 nodes; ${RUNS} runs per component and runtime`,
  );
  console.log(
    '| component | runtime | min ms | median ms | max ms | median ratio | CPU ms, median | CPU ratio |',
  );
  console.log('|---|---|---|---|---|---|---|---|');
  for (const component of ['gateway', 'discovery', 'cache', 'launcher']) {
    // A first run of each warms the page cache.
    for (const runtime of RUNTIMES) await startToReady(runtime, component, nats);
    const times = new Map<Runtime, Start[]>(RUNTIMES.map((r) => [r, []]));
    for (let i = 0; i < RUNS; i++) {
      for (const runtime of RUNTIMES) {
        times.get(runtime)!.push(await startToReady(runtime, component, nats));
      }
    }
    const firstRuns = times.get(RUNTIMES[0]!)!;
    const firstWall = median(firstRuns.map((s) => s.wallMs));
    const firstCpu = median(firstRuns.map((s) => s.cpuMs));
    const fmt = (x: number) => x.toFixed(0);
    for (const [runtime, starts] of times) {
      const xs = starts.map((s) => s.wallMs);
      const cpu = median(starts.map((s) => s.cpuMs));
      console.log(
        `| ${component} | ${runtime} | ${fmt(Math.min(...xs))} | ${fmt(median(xs))} | ${fmt(Math.max(...xs))} | ${(median(xs) / firstWall).toFixed(2)}× | ${fmt(cpu)} | ${(cpu / firstCpu).toFixed(2)}× |`,
      );
    }
  }
} finally {
  await cluster.close();
}
