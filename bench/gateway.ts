/**
 * Gateway throughput and latency against comparators, all in front of the same three
 * echo backends (grpc-js, each its own process) on loopback, driven by h2load:
 *   direct to the first backend · the Halyard gateway · nginx grpc_pass (1 worker) ·
 *   HAProxy (1 thread) · a bare node:http2 pipe proxy (the floor of node:http2);
 * for unary calls of 100 B and 16 KiB and a server-streaming call. Each case runs for
 * a bounded time (GATEWAY_BENCH_SECONDS, default 5, after a 1 s warm-up). Then the
 * gateway runs the first case once more under `node --cpu-prof` and the top frames of
 * the profile are printed: where the time goes.
 *
 * With `--cost`, the cost per proxied call instead: each proxy (gateway, nginx,
 * HAProxy, pipe) gets the same fixed number of unary 100 B calls (GATEWAY_BENCH_CALLS,
 * default 30,000; 64 in flight), as fast as they go or at a fixed offered rate
 * (GATEWAY_BENCH_RATE calls/s, all clients together), `--rounds` times (default 3) in a
 * rotating order, and the CPU time its processes used (utime + stime from /proc, summed
 * over the proxy's process tree: nginx's master and worker, …) is divided by the calls
 * completed. A node:http2 server answering the calls itself (no upstream) is measured
 * alongside: the server half of a call alone. `--targets a,b` limits the targets.
 *
 * GATEWAY_BENCH_CONFIG (a gateway config file) and GATEWAY_BENCH_NODE_FLAGS (node
 * options of the gateway process) measure variants of the gateway's settings;
 * GATEWAY_BENCH_BASELINE=<another checkout of Halyard, set up> adds its gateway as the
 * target `gateway (baseline)` of the cost rounds: a change measured against the code
 * before it under the same load at the same moments. `--profile` profiles the gateway
 * after the cost rounds too; GATEWAY_BENCH_KEEP_PROFILE=<dir> keeps the .cpuprofile.
 *
 * Usage: bash bench/run.sh gateway [--cost [--rounds 3] [--targets gateway,nginx]]
 *        (runs bench/ensure-load-tools.sh first), or node --import tsx bench/gateway.ts
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  copyFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { cpuMsOf } from '../services/common/proc.js';
import { sleep } from '../services/common/sleep.js';
import { echoClient } from '../test/support/echo-service.js';
import { NatsCluster } from '../test/support/nats-cluster.js';
import { freePort } from '../test/support/ports.js';
import { descendants, spawnEcho } from '../test/support/processes.js';
import { until } from '../test/support/wait.js';
import { echoRequestFile, readH2loadRun } from './h2load.js';
import { percentile } from './latency.js';

const SECONDS = Number(process.env.GATEWAY_BENCH_SECONDS ?? 5);
const COST_CALLS = Number(process.env.GATEWAY_BENCH_CALLS ?? 30_000);
/** Offered calls/s of the cost figure (all clients together); 0: as fast as they go. */
const COST_RATE = Number(process.env.GATEWAY_BENCH_RATE ?? 0);
const CLIENTS = 4;
const STREAMS_PER_CLIENT = 16;
const BACKENDS = 3;
const PROXIES = ['gateway', 'nginx', 'haproxy', 'node:http2 pipe', 'node:http2 server alone'];
const { values: args } = parseArgs({
  options: {
    cost: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '3' },
    targets: { type: 'string', default: PROXIES.join(',') },
    /** With --cost: the gateway's profile after the table (always done without --cost). */
    profile: { type: 'boolean', default: false },
  },
});
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'halyard-bench-gw-'));
const children: ChildProcess[] = [];

interface Case {
  readonly name: string;
  readonly method: string;
  readonly request: Record<string, unknown>;
}

const cases: Case[] = [
  { name: 'unary 100 B', method: 'Unary', request: { payload: Buffer.alloc(100, 1) } },
  { name: 'unary 16 KiB', method: 'Unary', request: { payload: Buffer.alloc(16_384, 1) } },
  {
    name: 'server stream 20 × 1 KiB',
    method: 'ServerStream',
    request: { responseCount: 20, responseSize: 1024 },
  },
];

interface Result {
  readonly rps: number;
  /** Calls that completed successfully. */
  readonly succeeded: number;
  readonly p50: number;
  readonly p99: number;
  readonly failed: number;
}

function start(command: string, args: string[], name: string, cwd?: string): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd });
  let err = '';
  child.stderr?.on('data', (c) => {
    err += c;
  });
  child.once('exit', (code, signal) => {
    if (code && !stopping) console.error(`${name} exited (${code ?? signal}): ${err.slice(-2000)}`);
  });
  children.push(child);
  return child;
}
let stopping = false;

function bodyFile(c: Case): string {
  return echoRequestFile(dir, c.method, c.request);
}

/** A load of `SECONDS` after a 1 s warm-up, or exactly `calls` calls at `rate` calls/s. */
async function h2load(
  port: number,
  c: Case,
  load: { calls: number; rate: number } | { seconds: number } = { seconds: SECONDS },
): Promise<Result> {
  const log = join(dir, `h2load-${port}-${c.method}.log`);
  const { stdout } = await run(
    'h2load',
    [
      '-t1',
      `-c${CLIENTS}`,
      `-m${STREAMS_PER_CLIENT}`,
      ...('calls' in load
        ? [
            `-n${load.calls}`,
            ...(load.rate > 0 ? [`--rps=${Math.max(1, Math.round(load.rate / CLIENTS))}`] : []),
          ]
        : [`-D${load.seconds}`, '--warm-up-time=1']),
      `--log-file=${log}`,
      `-d${bodyFile(c)}`,
      '-H',
      'content-type: application/grpc',
      '-H',
      'te: trailers',
      `http://127.0.0.1:${port}/halyard.testing.v1.Echo/${c.method}`,
    ],
    { maxBuffer: 1 << 24 },
  );
  const { rps, succeeded, failed, latenciesMs } = readH2loadRun(stdout, log);
  return {
    rps,
    succeeded,
    p50: percentile(latenciesMs, 50),
    p99: percentile(latenciesMs, 99),
    failed,
  };
}

function ready(adminPort: number): Promise<boolean> {
  return new Promise((resolve) => {
    get({ host: '127.0.0.1', port: adminPort, path: '/readyz' }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    }).on('error', () => resolve(false));
  });
}

/** A gateway from this tree, or from another checkout of Halyard (`tree`). */
async function startGateway(servers: string[], profileDir?: string, tree?: string) {
  const port = await freePort();
  const admin = await freePort();
  const child = start(
    process.execPath,
    [
      ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
      ...(process.env.GATEWAY_BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? []),
      '--import',
      'tsx',
      'services/gateway/main.ts',
      ...(process.env.GATEWAY_BENCH_CONFIG ? ['--config', process.env.GATEWAY_BENCH_CONFIG] : []),
      '--id',
      tree ? 'bench-gw-baseline' : 'bench-gw',
      '--nats',
      servers.join(','),
      '--listen',
      `127.0.0.1:${port}`,
      '--admin',
      `127.0.0.1:${admin}`,
      '--expose-internal',
      'halyard.testing.v1.Echo',
    ],
    'gateway',
    tree,
  );
  await until('gateway ready', () => ready(admin), 30_000, 100);
  return { port, child };
}

/** A proxy under test: its port and the process whose tree does its work. */
interface Proxy {
  readonly port: number;
  readonly child: ChildProcess;
}

async function startNginx(backendPorts: number[]): Promise<Proxy> {
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/nginx-body;
  upstream echo {
    ${backendPorts.map((p) => `server 127.0.0.1:${p};`).join(' ')}
    keepalive 128;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:${port} http2;
    http2_max_concurrent_streams 1024;
    # The default (1000 calls per connection) would end h2load's connections mid-run.
    keepalive_requests 100000000;
    location / { grpc_pass grpc://echo; }
  }
}
`,
  );
  return { port, child: start('nginx', ['-p', dir, '-c', conf], 'nginx') };
}

async function startHaproxy(backendPorts: number[]): Promise<Proxy> {
  const port = await freePort();
  const conf = join(dir, 'haproxy.cfg');
  writeFileSync(
    conf,
    `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:${port} proto h2
  default_backend be
backend be
  balance roundrobin
${backendPorts.map((p, i) => `  server echo${i + 1} 127.0.0.1:${p} proto h2`).join('\n')}
`,
  );
  return { port, child: start('haproxy', ['-db', '-f', conf], 'haproxy') };
}

/** The bare pipe proxy to these backends; without backends, the server half alone. */
async function startPipeProxy(backendPorts: number[]): Promise<Proxy> {
  const port = await freePort();
  const child = start(
    process.execPath,
    ['--import', 'tsx', 'bench/h2-pipe-proxy.ts', String(port), ...backendPorts.map(String)],
    backendPorts.length > 0 ? 'node:http2 pipe' : 'node:http2 server alone',
  );
  return { port, child };
}

/** Every process of a tree, root first. */
const processTree = (root: number): number[] => [root, ...descendants(root)];

/** CPU seconds (user + system, all threads) used so far by these processes. */
function cpuSeconds(pids: readonly number[]): number {
  let ms = 0;
  for (const pid of pids) {
    const used = cpuMsOf(pid);
    if (used === undefined) throw new Error(`no process ${pid} to measure`);
    ms += used;
  }
  return ms / 1000;
}

/** One real gRPC call through a target: the comparison is only fair if all of them work. */
function sanity(port: number): Promise<void> {
  const client = echoClient(`127.0.0.1:${port}`);
  return new Promise<void>((resolve, reject) =>
    client.unary(
      { payload: Buffer.from('sanity') },
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
      (error) => {
        client.close();
        if (error) reject(error);
        else resolve();
      },
    ),
  );
}

/** Where a frame's code lives, for the profile summary. */
function area(url: string, name: string): string {
  if (name === '(garbage collector)') return 'garbage collector';
  if (name === '(program)' || url === '') return 'native (V8, libuv, nghttp2, syscalls)';
  if (url.includes('/services/gateway/')) return 'Halyard gateway code';
  if (url.includes('node:internal/http2')) return 'node:http2 (JS side)';
  if (url.includes('prom-client')) return 'metrics (prom-client)';
  if (/node:internal\/(streams|stream_base)|node:events/.test(url))
    return 'node streams and events';
  if (url.startsWith('node:')) return 'other node internals';
  return 'other';
}

/** Self time of the busiest frames and by area, idle time left out. */
function profileSummary(profileDir: string, count: number): string[] {
  const files = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'));
  // tsx's loader thread writes a profile too: the main thread's is the largest.
  const file = files
    .map((f) => ({ f, size: statSync(join(profileDir, f)).size }))
    .sort((a, b) => b.size - a.size)[0]?.f;
  if (!file) return ['(no profile written)'];
  const profile = JSON.parse(readFileSync(join(profileDir, file), 'utf8')) as {
    nodes: Array<{
      id: number;
      callFrame: { functionName: string; url: string; lineNumber: number };
    }>;
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const frames = new Map<string, number>();
  const areas = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id)!;
    if (frame.functionName === '(idle)') return;
    const dt = profile.timeDeltas[i] ?? 0;
    const where = frame.url
      ? ` ${frame.url.replace(/^file:\/\/.*?\/(node_modules|services|bench)\//, '$1/')}:${frame.lineNumber + 1}`
      : '';
    const key = `${frame.functionName || '(anonymous)'}${where}`;
    frames.set(key, (frames.get(key) ?? 0) + dt);
    const a = area(frame.url, frame.functionName);
    areas.set(a, (areas.get(a) ?? 0) + dt);
    busy += dt;
  });
  const pct = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  return [
    'by area:',
    ...[...areas].sort((a, b) => b[1] - a[1]).map(([a, us]) => `  ${pct(us)}  ${a}`),
    `top ${count} frames:`,
    ...[...frames]
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([key, us]) => `  ${pct(us)}  ${key}`),
  ];
}

/** Where the gateway's time goes: the first case again, on a new gateway under the CPU profiler. */
async function profileGateway(gateway: Proxy, servers: string[]): Promise<void> {
  gateway.child.kill('SIGTERM');
  await new Promise((resolve) => gateway.child.once('exit', resolve));
  const profileDir = join(dir, 'profile');
  const profiled = await startGateway(servers, profileDir);
  const p = await h2load(profiled.port, cases[0]!);
  profiled.child.kill('SIGTERM');
  await new Promise((resolve) => profiled.child.once('exit', resolve));
  if (process.env.GATEWAY_BENCH_KEEP_PROFILE) {
    for (const f of readdirSync(profileDir)) {
      copyFileSync(join(profileDir, f), join(process.env.GATEWAY_BENCH_KEEP_PROFILE, f));
    }
  }
  console.log(
    `\nCPU profile of the gateway, ${cases[0]!.name} (${fmt(p.rps, 0)} calls/s while profiled), self time while busy (idle left out):`,
  );
  for (const line of profileSummary(profileDir, 25)) console.log(`  ${line}`);
}

const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

interface Cost extends Result {
  /** CPU time of the proxy's processes per completed call, in µs. */
  readonly cpuUs: number;
}

/** One fixed load through a proxy and the CPU time its processes spent on it. */
async function measureCost(proxy: Proxy, calls: number): Promise<Cost> {
  const pids = processTree(proxy.child.pid!);
  const before = cpuSeconds(pids);
  const result = await h2load(proxy.port, cases[0]!, { calls, rate: COST_RATE });
  const cpu = cpuSeconds(pids) - before;
  return { ...result, cpuUs: (cpu * 1e6) / result.succeeded };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Each proxy gets the same load `rounds` times, in an order rotated each round so that
 * none always runs first or last; medians per proxy, with the spread of CPU time per
 * call over the rounds (± half of max - min, relative to the median).
 */
async function costTable(proxies: Array<[string, Proxy]>, rounds: number): Promise<void> {
  // Warm-up: connections to the backends, JIT.
  for (const [, proxy] of proxies) await h2load(proxy.port, cases[0]!, { calls: 5000, rate: 0 });
  // Work a proxy does without calls (timers, the bus, pings) is charged to the calls:
  // shown here so that it can be told apart.
  const idle = new Map<string, number>();
  const idleSeconds = 5;
  const idleBefore = proxies.map(([, proxy]) => cpuSeconds(processTree(proxy.child.pid!)));
  await sleep(idleSeconds * 1000); // the idle window itself: a deliberate pause
  proxies.forEach(([name, proxy], i) => {
    const used = cpuSeconds(processTree(proxy.child.pid!)) - idleBefore[i]!;
    idle.set(name, (100 * used) / idleSeconds);
  });
  const costs = new Map<string, Cost[]>(proxies.map(([name]) => [name, []]));
  console.log('\n| round | target | µs CPU/call | calls/s | p99 ms | failed |');
  console.log('|---|---|---|---|---|---|');
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < proxies.length; i++) {
      const [name, proxy] = proxies[(i + round) % proxies.length]!;
      const cost = await measureCost(proxy, COST_CALLS);
      costs.get(name)!.push(cost);
      console.log(
        `| ${round + 1} | ${name} | ${fmt(cost.cpuUs, 1)} | ${fmt(cost.rps, 0)} | ${fmt(cost.p99)} | ${cost.failed} |`,
      );
    }
  }
  const summary = new Map(
    [...costs].map(([name, runs]) => {
      const us = runs.map((r) => r.cpuUs);
      const mid = median(us);
      return [
        name,
        {
          us: mid,
          spread: (Math.max(...us) - Math.min(...us)) / mid,
          rps: median(runs.map((r) => r.rps)),
          p99: median(runs.map((r) => r.p99)),
        },
      ];
    }),
  );
  const nginx = summary.get('nginx');
  console.log(
    `\n| target | µs CPU/call (median) | spread over ${rounds} rounds | calls/s per core | per core vs nginx | calls/s | p99 ms | p99 vs nginx | idle CPU |`,
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const [name, s] of summary) {
    const versus = (x: number | undefined) => (x === undefined ? 'n/a' : `${fmt(x)}×`);
    console.log(
      `| ${name} | ${fmt(s.us, 1)} | ±${fmt((100 * s.spread) / 2, 1)} % | ${fmt(1e6 / s.us, 0)} | ${versus(nginx && nginx.us / s.us)} | ${fmt(s.rps, 0)} | ${fmt(s.p99)} | ${versus(nginx && s.p99 / nginx.p99)} | ${fmt(idle.get(name)!, 1)} % |`,
    );
  }
}

async function main(): Promise<void> {
  const versions = await Promise.all([
    run('h2load', ['--version']).then((r) => r.stdout.trim()),
    run('nginx', ['-v']).then((r) => r.stderr.trim()),
    run('haproxy', ['-v']).then((r) => r.stdout.split('\n')[0]!.trim()),
  ]);
  const cluster = await NatsCluster.start({ nodes: 1 });
  try {
    const backends: number[] = [];
    for (let i = 1; i <= BACKENDS; i++) {
      const backend = await spawnEcho({ instanceId: `bench-${i}`, nats: cluster.servers });
      children.push(backend.child);
      backends.push(backend.port);
    }
    const gateway = await startGateway(cluster.servers);
    const proxies = new Map<string, Proxy>([
      ['gateway', gateway],
      ['nginx', await startNginx(backends)],
      ['haproxy', await startHaproxy(backends)],
      ['node:http2 pipe', await startPipeProxy(backends)],
    ]);
    const targets: Array<[string, number]> = [
      ['direct', backends[0]!],
      ...[...proxies].map(([name, proxy]): [string, number] => [name, proxy.port]),
    ];
    // Not a proxy (it answers calls itself): a comparator of the cost figure only.
    if (args.cost) {
      // A change to the gateway against the gateway before it, in the same rounds.
      const baseline = process.env.GATEWAY_BENCH_BASELINE;
      if (baseline) {
        const before = await startGateway(cluster.servers, undefined, baseline);
        proxies.set('gateway (baseline)', before);
        targets.push(['gateway (baseline)', before.port]);
      }
      const alone = await startPipeProxy([]);
      proxies.set('node:http2 server alone', alone);
      targets.push(['node:http2 server alone', alone.port]);
    }
    for (const [name, port] of targets) {
      await until(
        `${name} answers`,
        () =>
          sanity(port).then(
            () => true,
            () => false,
          ),
        20_000,
        200,
      );
    }
    if (args.cost) {
      const names = args.targets.split(',');
      if (proxies.has('gateway (baseline)')) names.splice(1, 0, 'gateway (baseline)');
      for (const name of names) if (!proxies.has(name)) throw new Error(`no proxy ${name}`);
      console.log(
        `\nCost per call: ${versions.join('; ')}; node ${process.version}; ` +
          `${BACKENDS} echo backends; h2load -t1 -c${CLIENTS} -m${STREAMS_PER_CLIENT} -n${COST_CALLS}` +
          `${COST_RATE > 0 ? ` --rps=${COST_RATE / CLIENTS} (${COST_RATE} calls/s offered)` : ''}, ` +
          `${cases[0]!.name}, ${args.rounds} rounds`,
      );
      await costTable(
        names.map((name): [string, Proxy] => [name, proxies.get(name)!]),
        Number(args.rounds),
      );
      if (args.profile) await profileGateway(gateway, cluster.servers);
      return;
    }
    console.log(
      `\nGateway benchmark: ${versions.join('; ')}; node ${process.version}; ` +
        `${BACKENDS} echo backends; h2load -t1 -c${CLIENTS} -m${STREAMS_PER_CLIENT}, ${SECONDS} s per case after 1 s warm-up`,
    );
    console.log('\n| case | target | calls/s | p50 ms | p99 ms | failed |');
    console.log('|---|---|---|---|---|---|');
    const ratios: string[] = [];
    for (const c of cases) {
      const results = new Map<string, Result>();
      for (const [name, port] of targets) {
        const r = await h2load(port, c);
        results.set(name, r);
        console.log(
          `| ${c.name} | ${name} | ${fmt(r.rps, 0)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${r.failed} |`,
        );
      }
      const g = results.get('gateway')!;
      const ratio = (other: string) => {
        const o = results.get(other)!;
        return `throughput ${fmt(g.rps / o.rps)}×, p99 ${fmt(g.p99 / o.p99)}×`;
      };
      const versus = ['direct', 'nginx', 'haproxy', 'node:http2 pipe'].map(ratio);
      ratios.push(`| ${c.name} | ${versus.join(' | ')} |`);
    }
    console.log(
      '\n| case | gateway/direct | gateway/nginx | gateway/haproxy | gateway/node:http2 pipe |',
    );
    console.log('|---|---|---|---|---|');
    for (const line of ratios) console.log(line);

    await profileGateway(gateway, cluster.servers);
  } finally {
    stopping = true;
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    await cluster.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// Interrupted: the proxies, backends and NATS server go too, and the working directory.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    stopping = true;
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  });
}
await main();
process.exit(0);
