/**
 * What a gateway worker costs in memory with the sticky preferences loaded, on a real
 * 3-node cluster: the affinity bucket is filled with PREFS preferences (default
 * 1,000,000, for at most FILL_SECONDS), then a gateway process (`services/gateway/main.ts
 * --workers W`) is started for each W asked for, and once `/readyz` says ready (every
 * worker holds every preference) the resident memory of the primary and of each
 * worker is read from /proc. Each worker has its own bus views, so each holds the
 * preferences: the cost of one more worker is the difference between two rows.
 *
 * Usage: bash bench/run.sh gateway-workers [--prefs N] [--fill-seconds S] [--workers 1,2]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:net';
import { pino } from 'pino';
import { AffinityBucket, type AffinityPreference, Bus, type KvStore } from '../bus/index.js';
import { residentBytesOf } from '../services/common/proc.js';
import { NatsCluster } from '../test/support/nats-cluster.js';
import { descendants } from '../test/support/processes.js';
import { until } from '../test/support/wait.js';

const option = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const PREFS = Number(option('prefs', '1000000'));
const FILL_SECONDS = Number(option('fill-seconds', '300'));
const WORKERS = option('workers', '1,2').split(',').map(Number);
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

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
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

async function measure(servers: string[], workers: number): Promise<Row> {
  const [port, admin] = [await freePort(), await freePort()];
  const started = performance.now();
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...['--import', 'tsx', 'services/gateway/main.ts', '--id', 'bench-workers'],
      ...['--workers', String(workers), '--nats', servers.join(',')],
      ...['--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${admin}`],
    ],
    { stdio: 'ignore' },
  );
  try {
    await until('gateway ready', () => adminText(admin, '/readyz'), 600_000, 200);
    const readySeconds = (performance.now() - started) / 1000;
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
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
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }
}

const cluster = await NatsCluster.start();
try {
  const bus = await Bus.connect({
    servers: cluster.servers,
    name: 'bench-workers',
    logger: silent,
  });
  await bus.provision();
  const started = performance.now();
  const filled = await fill(
    await bus.store(AffinityBucket),
    PREFS,
    Date.now() + FILL_SECONDS * 1000,
  );
  console.log(
    `nats-server ${bus.server.version}; ${filled} preferences written in ${((performance.now() - started) / 1000).toFixed(1)} s (256 concurrent puts, R3)`,
  );
  await bus.close();
  const rows: Row[] = [];
  for (const workers of WORKERS) rows.push(await measure(cluster.servers, workers));
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
} finally {
  await cluster.close();
}
