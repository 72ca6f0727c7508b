/**
 * Launcher figures on a real 3-node cluster:
 *   - crash → restart: a child is SIGKILLed; time until the launcher has started its
 *     replacement (STARTED) and until that one answers its readiness probe (READY), with
 *     a first restart interval of 1 s (target ≤ 1.2 s to STARTED);
 *   - overhead: RSS and CPU of one launcher process (`main.ts`) supervising 0 idle
 *     children, then — the same process, after a refresh — 50 idle children.
 * Bounded: --crashes N (default 10) and a fixed sampling window per overhead case.
 * Usage: bash bench/run.sh launcher [--crashes N]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Bus, type LifecycleEvent, Subjects } from '../bus/index.js';
import { cpuMsOf, residentBytesOf } from '../services/common/proc.js';
import { sleep } from '../services/common/sleep.js';
import { ControlCodecsOf } from '../services/launcher/control.js';
import { Launcher } from '../services/launcher/launcher.js';
import { child, collectEvents, Kind, State, writeConfig } from '../test/support/launcher.js';
import { NatsCluster } from '../test/support/nats-cluster.js';
import { until } from '../test/support/wait.js';

const { values } = parseArgs({ options: { crashes: { type: 'string', default: '10' } } });
const CRASHES = Number(values.crashes);
const IDLE_CHILDREN = 50;
const WINDOW_MS = 5000;
const logger = pino({ level: 'error' });

const median = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const fmt = (x: number) => x.toFixed(0);

async function crashToRestart(bus: Bus): Promise<void> {
  const host = 'bench-crash';
  const live = await collectEvents(bus, host);
  const configFile = await writeConfig({
    hostId: host,
    components: {
      svc: {
        command: process.execPath,
        args: [child('service')],
        port: {},
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the launcher's port placeholder
        readiness: { http: 'http://127.0.0.1:${PORT}/healthz' },
        // Each crash comes after the minimum uptime, so every restart waits the first interval.
        restart: { intervals: [1, 1, 1, 5], minUptimeSeconds: 0.5 },
      },
    },
  });
  const launcher = await Launcher.start({ configFile, bus, logger });
  const toStarted: number[] = [];
  const toReady: number[] = [];
  const after = (kind: number, since: number) => () =>
    live.events.find((e: LifecycleEvent) => e.kind === kind && e.occurredAtMs >= since);
  try {
    for (let i = 0; i < CRASHES; i++) {
      const { pid } = await until('ready', () => {
        const p = launcher.display().processes[0];
        return p?.state === State.READY && p;
      });
      await sleep(600);
      const crashedAt = Date.now();
      process.kill(pid, 'SIGKILL');
      const started = await until('restarted', after(Kind.STARTED, crashedAt), 10_000);
      const ready = await until('ready again', after(Kind.READY, crashedAt), 10_000);
      toStarted.push(started.occurredAtMs - crashedAt);
      toReady.push(ready.occurredAtMs - crashedAt);
    }
  } finally {
    await launcher.shutdown();
    await live.stop();
  }
  console.log(
    `\nCrash → restart, first interval 1 s (${CRASHES} crashes, SIGKILL of a ready child)`,
  );
  console.log('| measure | min ms | median ms | max ms | target |');
  console.log('|---|---|---|---|---|');
  for (const [name, xs, target] of [
    ['crash → replacement STARTED', toStarted, '≤ 1200'],
    ['crash → replacement READY (HTTP probe)', toReady, '—'],
  ] as const) {
    console.log(
      `| ${name} | ${fmt(Math.min(...xs))} | ${fmt(median(xs))} | ${fmt(Math.max(...xs))} | ${target} |`,
    );
  }
}

interface Usage {
  readonly rssMiB: number;
  readonly cpuPercent: number;
}

function cpuMs(pid: number): number {
  const ms = cpuMsOf(pid);
  if (ms === undefined) throw new Error(`no process ${pid}`);
  return ms;
}

function rssMiB(pid: number): number {
  const bytes = residentBytesOf(pid);
  if (bytes === undefined) throw new Error(`no process ${pid}`);
  return bytes / 2 ** 20;
}

async function usageOver(pid: number): Promise<Usage> {
  const t0 = cpuMs(pid);
  const start = performance.now();
  let peak = 0;
  while (performance.now() - start < WINDOW_MS) {
    peak = Math.max(peak, rssMiB(pid));
    await sleep(250);
  }
  const seconds = (performance.now() - start) / 1000;
  return { rssMiB: peak, cpuPercent: ((cpuMs(pid) - t0) / 1000 / seconds) * 100 };
}

async function overhead(bus: Bus, servers: string[]): Promise<void> {
  const host = 'bench-idle';
  const idle = (instances: number) => ({
    hostId: host,
    components: instances ? { idle: { command: 'sleep', args: ['3600'], instances } } : {},
  });
  const configFile = await writeConfig(idle(0));
  const main = fileURLToPath(new URL('../services/launcher/main.ts', import.meta.url));
  const proc: ChildProcess = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      main,
      '--config',
      configFile,
      '--nats',
      servers.join(','),
      '--grpc',
      '127.0.0.1:0',
      '--admin-port',
      '0',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, HALYARD_LOG_LEVEL: 'warn' } },
  );
  createInterface({ input: proc.stdout! }).on('line', () => {});
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  const display = () =>
    bus
      .request(Subjects.control('launcher', host, 'display'), {}, ControlCodecsOf.display)
      .catch(() => undefined);
  try {
    await until('launcher up', display, 30_000);
    await sleep(1000); // past start-up work (module loading, JIT) before the baseline window
    const baseline = await usageOver(proc.pid!);
    await writeConfig(idle(IDLE_CHILDREN), configFile);
    await bus.request(
      Subjects.control('launcher', host, 'refresh'),
      {},
      ControlCodecsOf.refresh,
      60_000,
    );
    await until(
      'all ready',
      async () => {
        const s = await display();
        return s?.processes.filter((p) => p.state === State.READY).length === IDLE_CHILDREN;
      },
      30_000,
    );
    await sleep(1000);
    const loaded = await usageOver(proc.pid!);
    console.log(
      `\nLauncher overhead (one main.ts process, ${WINDOW_MS / 1000} s windows, idle children are \`sleep\`)`,
    );
    console.log('| case | peak RSS MiB | CPU % of one core | RSS ratio |');
    console.log('|---|---|---|---|');
    console.log(
      `| 0 children (baseline) | ${baseline.rssMiB.toFixed(1)} | ${baseline.cpuPercent.toFixed(2)} | 1.00× |`,
    );
    console.log(
      `| ${IDLE_CHILDREN} idle children | ${loaded.rssMiB.toFixed(1)} | ${loaded.cpuPercent.toFixed(2)} | ${(loaded.rssMiB / baseline.rssMiB).toFixed(2)}× |`,
    );
    console.log(
      `| difference per child | ${(((loaded.rssMiB - baseline.rssMiB) / IDLE_CHILDREN) * 1024).toFixed(0)} KiB | — | — |`,
    );
  } finally {
    proc.kill('SIGTERM');
    await exited;
  }
}

const cluster = await NatsCluster.start();
const bus = await Bus.connect({ servers: cluster.servers, name: 'bench-launcher', logger });
try {
  await bus.provision();
  console.log(`nats-server ${bus.server.version}; 3-node cluster; node ${process.version}`);
  await crashToRestart(bus);
  await overhead(bus, cluster.servers);
} finally {
  await bus.close();
  await cluster.close();
}
