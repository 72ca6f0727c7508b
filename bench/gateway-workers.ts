/**
 * What gateway workers cost and give.
 *
 * Memory (default): on a real 3-node cluster the affinity bucket is filled with PREFS
 * preferences (default 1,000,000, for at most FILL_SECONDS), then a gateway process
 * (`services/gateway/main.ts --workers W`) is started for each W asked for, and once
 * `/readyz` says ready (every worker holds every preference) the resident memory of
 * the primary and of each worker is read from /proc. Each worker has its own bus
 * views, so each holds the preferences: the cost of one more worker is the difference
 * between two rows.
 *
 * Throughput (`--throughput`): one gateway per W asked for, all started before the
 * first round, in front of one echo backend; h2load drives unary 100 B calls as
 * bench/gateway.ts does (-t1 -c4 -m16), 5 s per round after a 1 s warm-up, the
 * gateways taking turns round after round so that a shared machine's drift hits each
 * alike; medians of ROUNDS (default 5).
 *
 * Usage: bash bench/run.sh gateway-workers [--prefs N] [--fill-seconds S] [--workers 1,2]
 *        bash bench/run.sh gateway-workers --throughput [--rounds 5] [--workers 1,2]
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { AffinityBucket, type AffinityPreference, Bus, type KvStore } from '../bus/index.js';
import { residentBytesOf } from '../services/common/proc.js';
import { sleep } from '../services/common/sleep.js';
import { NatsCluster } from '../test/support/nats-cluster.js';
import { freePort } from '../test/support/ports.js';
import { descendants, spawnEcho } from '../test/support/processes.js';
import { until } from '../test/support/wait.js';
import { echoRequestFile, readH2loadRun } from './h2load.js';
import { percentile } from './latency.js';

const option = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const PREFS = Number(option('prefs', '1000000'));
const FILL_SECONDS = Number(option('fill-seconds', '300'));
const WORKERS = option('workers', '1,2').split(',').map(Number);
const ROUNDS = Number(option('rounds', '5'));
const ROUND_SECONDS = 5;
/** After ready: the load's garbage is collected and RSS settles before it is read. */
const SETTLE_MS = 5000;
const silent = pino({ level: 'silent' });
const MB = 2 ** 20;

/** Writes preferences for users `user-<i>` with 256 puts in flight, until `to` or the deadline. */
async function fill(store: KvStore<AffinityPreference>, to: number, deadline: number) {
  let next = 0;
  const now = Date.now();
  const writer = async () => {
    while (next < to && Date.now() < deadline) {
      const i = next++;
      await store.put({
        serviceId: 'echo',
        userKey: createHmac('sha256', 'bench').update(`user-${i}`).digest('base64url'),
        instanceId: `echo-${(i % 3) + 1}`,
        createdAtMs: now,
        lastSeenAtMs: now,
        idleSeconds: 28_800,
        gatewayId: 'bench',
      });
    }
  };
  await Promise.all(Array.from({ length: 256 }, writer));
  return next;
}

async function adminText(port: number, path: string): Promise<string | undefined> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`).catch(() => undefined);
  return response?.ok ? response.text() : undefined;
}

interface Row {
  readonly workers: number;
  readonly readySeconds: number;
  readonly preferences: number;
  readonly primaryMB: number;
  readonly workerMB: number[];
}

interface GatewayProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly admin: number;
}

async function startGateway(servers: string[], workers: number): Promise<GatewayProcess> {
  const [port, admin] = [await freePort(), await freePort()];
  const child = spawn(
    process.execPath,
    [
      ...['--import', 'tsx', 'services/gateway/main.ts', '--id', `bench-workers-${workers}`],
      ...['--workers', String(workers), '--nats', servers.join(',')],
      ...['--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${admin}`],
      ...['--expose-internal', 'halyard.testing.v1.Echo'],
    ],
    { stdio: 'ignore' },
  );
  await until('gateway ready', () => adminText(admin, '/readyz'), 600_000, 200);
  return { child, port, admin };
}

async function stopGateway({ child }: GatewayProcess): Promise<void> {
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
}

async function measure(servers: string[], workers: number): Promise<Row> {
  const started = performance.now();
  const gateway = await startGateway(servers, workers);
  const { child, admin } = gateway;
  try {
    const readySeconds = (performance.now() - started) / 1000;
    await sleep(SETTLE_MS); // nothing announces a settled heap: a deliberate pause
    const metrics = (await adminText(admin, '/metrics')) ?? '';
    const preferences = Number(
      /^halyard_gateway_affinity_preferences (\d+)/m.exec(metrics)?.[1] ?? Number.NaN,
    );
    const rss = (pid: number | undefined) => (pid ? (residentBytesOf(pid) ?? 0) / MB : 0);
    // With one worker the gateway is the process itself; otherwise its children (tsx's
    // loader runs in-process, so the children are the workers).
    const children = workers === 1 ? [] : descendants(child.pid);
    return {
      workers,
      readySeconds,
      preferences,
      primaryMB: rss(child.pid),
      workerMB: children.map(rss),
    };
  } finally {
    await stopGateway(gateway);
  }
}

/** Calls/s and p99 of unary 100 B calls through `port` for one round, by h2load. */
async function h2load(port: number, dir: string): Promise<{ rps: number; p99: number }> {
  const body = echoRequestFile(dir, 'unary', { payload: Buffer.alloc(100, 1) });
  const log = join(dir, `h2load-${port}.log`);
  const { stdout } = await promisify(execFile)(
    'h2load',
    [
      ...['-t1', '-c4', '-m16', `-D${ROUND_SECONDS}`, '--warm-up-time=1', `--log-file=${log}`],
      ...[`-d${body}`, '-H', 'content-type: application/grpc', '-H', 'te: trailers'],
      `http://127.0.0.1:${port}/halyard.testing.v1.Echo/Unary`,
    ],
    { maxBuffer: 1 << 24 },
  );
  const { rps, latenciesMs } = readH2loadRun(stdout, log);
  return { rps, p99: percentile(latenciesMs, 99) };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1]!;

async function throughput(servers: string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'halyard-bench-workers-'));
  const backend = await spawnEcho({ instanceId: 'bench-1', nats: servers });
  const gateways = new Map<number, GatewayProcess>();
  try {
    for (const workers of WORKERS) gateways.set(workers, await startGateway(servers, workers));
    const results = new Map<number, Array<{ rps: number; p99: number }>>(
      WORKERS.map((w) => [w, []]),
    );
    console.log(
      `unary 100 B, h2load -t1 -c4 -m16, ${ROUND_SECONDS} s per round, ${ROUNDS} rounds taking turns`,
    );
    for (let round = 1; round <= ROUNDS; round++) {
      for (const workers of WORKERS) {
        const r = await h2load(gateways.get(workers)!.port, dir);
        results.get(workers)!.push(r);
        console.log(
          `round ${round}, ${workers} worker(s): ${r.rps.toFixed(0)} calls/s, p99 ${r.p99.toFixed(2)} ms`,
        );
      }
    }
    const base = median(results.get(WORKERS[0]!)!.map((r) => r.rps));
    console.log('| workers | calls/s (median) | p99 ms (median) | calls/s vs 1st row |');
    console.log('|---|---|---|---|');
    for (const workers of WORKERS) {
      const rps = median(results.get(workers)!.map((r) => r.rps));
      const p99 = median(results.get(workers)!.map((r) => r.p99));
      console.log(
        `| ${workers} | ${rps.toFixed(0)} | ${p99.toFixed(2)} | ${(rps / base).toFixed(2)}× |`,
      );
    }
  } finally {
    for (const gateway of gateways.values()) await stopGateway(gateway);
    await backend.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function memory(bus: Bus, servers: string[]): Promise<void> {
  const started = performance.now();
  const filled = await fill(
    await bus.store(AffinityBucket),
    PREFS,
    Date.now() + FILL_SECONDS * 1000,
  );
  console.log(
    `nats-server ${bus.server.version}; ${filled} preferences written in ${((performance.now() - started) / 1000).toFixed(1)} s (256 concurrent puts, R3)`,
  );
  const rows: Row[] = [];
  for (const workers of WORKERS) rows.push(await measure(servers, workers));
  console.log(
    '| workers | ready s | preferences per worker | primary RSS MB | each worker RSS MB | total RSS MB |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const row of rows) {
    const total = row.primaryMB + row.workerMB.reduce((a, b) => a + b, 0);
    const each =
      row.workers === 1
        ? '(the primary serves)'
        : row.workerMB.map((mb) => mb.toFixed(0)).join(', ');
    console.log(
      `| ${row.workers} | ${row.readySeconds.toFixed(1)} | ${row.preferences} | ${row.primaryMB.toFixed(0)} | ${each} | ${total.toFixed(0)} |`,
    );
  }
}

const calls = process.argv.includes('--throughput');
// Calls never touch the bus: one node is enough for them.
const cluster = await NatsCluster.start(calls ? { nodes: 1 } : {});
try {
  const bus = await Bus.connect({
    servers: cluster.servers,
    name: 'bench-workers',
    logger: silent,
  });
  await bus.provision();
  if (calls) await throughput(cluster.servers);
  else await memory(bus, cluster.servers);
  await bus.close();
} finally {
  await cluster.close();
}
