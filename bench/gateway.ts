/**
 * Gateway throughput and latency against comparators, all in front of the same echo
 * backend (grpc-js, its own process) on loopback, driven by h2load:
 *   direct to the backend · the Halyard gateway · nginx grpc_pass (1 worker) ·
 *   HAProxy (1 thread) · a bare node:http2 pipe proxy (the floor of node:http2);
 * for unary calls of 100 B and 16 KiB and a server-streaming call. Each case runs for
 * a bounded time (GATEWAY_BENCH_SECONDS, default 5, after a 1 s warm-up). Then the
 * gateway runs the first case once more under `node --cpu-prof` and the top frames of
 * the profile are printed: where the time goes.
 *
 * Usage: npm run bench (runs bench/ensure-load-tools.sh first), or
 *        node --import tsx bench/gateway.ts
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { halyard } from '../proto/gen/halyard.js';
import { echoClient } from '../test/support/echo-service.js';
import { NatsCluster } from '../test/support/nats-cluster.js';
import { spawnEcho } from '../test/support/processes.js';
import { until } from '../test/support/wait.js';

const SECONDS = Number(process.env.GATEWAY_BENCH_SECONDS ?? 5);
const CLIENTS = 4;
const STREAMS_PER_CLIENT = 16;
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
  readonly p50: number;
  readonly p99: number;
  readonly failed: number;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function start(command: string, args: string[], name: string): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
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
  const { EchoRequest } = halyard.testing.v1;
  const bytes = EchoRequest.encode(EchoRequest.fromObject(c.request)).finish();
  const framed = Buffer.alloc(5 + bytes.length);
  framed.writeUInt32BE(bytes.length, 1);
  framed.set(bytes, 5);
  const file = join(dir, `${c.method}-${bytes.length}.bin`);
  writeFileSync(file, framed);
  return file;
}

async function h2load(port: number, c: Case, seconds = SECONDS): Promise<Result> {
  const log = join(dir, `h2load-${port}-${c.method}.log`);
  const { stdout } = await run(
    'h2load',
    [
      '-t1',
      `-c${CLIENTS}`,
      `-m${STREAMS_PER_CLIENT}`,
      `-D${seconds}`,
      '--warm-up-time=1',
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
  const rps = Number(/finished in [\d.]+s, ([\d.]+) req\/s/.exec(stdout)?.[1] ?? Number.NaN);
  const failed = Number(/requests: .* (\d+) failed/.exec(stdout)?.[1] ?? Number.NaN);
  const latencies = readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((line) => Number(line.split('\t')[2]) / 1000)
    .sort((a, b) => a - b);
  rmSync(log);
  const at = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  return { rps, p50: at(0.5), p99: at(0.99), failed };
}

function ready(adminPort: number): Promise<boolean> {
  return new Promise((resolve) => {
    get({ host: '127.0.0.1', port: adminPort, path: '/readyz' }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    }).on('error', () => resolve(false));
  });
}

async function startGateway(servers: string[], profileDir?: string) {
  const port = await freePort();
  const admin = await freePort();
  const child = start(
    process.execPath,
    [
      ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
      '--import',
      'tsx',
      'services/gateway/main.ts',
      '--id',
      'bench-gw',
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
  );
  await until('gateway ready', () => ready(admin), 30_000, 100);
  return { port, child };
}

async function startNginx(backendPort: number): Promise<number> {
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
  upstream echo { server 127.0.0.1:${backendPort}; keepalive 128; keepalive_requests 100000000; }
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
  start('nginx', ['-p', dir, '-c', conf], 'nginx');
  return port;
}

async function startHaproxy(backendPort: number): Promise<number> {
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
  server echo 127.0.0.1:${backendPort} proto h2
`,
  );
  start('haproxy', ['-db', '-f', conf], 'haproxy');
  return port;
}

async function startPipeProxy(backendPort: number): Promise<number> {
  const port = await freePort();
  start(
    process.execPath,
    ['--import', 'tsx', 'bench/h2-pipe-proxy.ts', String(port), String(backendPort)],
    'node:http2 pipe',
  );
  return port;
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
      ? ` ${frame.url.replace(/^.*\/(node_modules|wt-gateway)\//, '')}:${frame.lineNumber + 1}`
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

const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

async function main(): Promise<void> {
  const versions = await Promise.all([
    run('h2load', ['--version']).then((r) => r.stdout.trim()),
    run('nginx', ['-v']).then((r) => r.stderr.trim()),
    run('haproxy', ['-v']).then((r) => r.stdout.split('\n')[0]!.trim()),
  ]);
  const cluster = await NatsCluster.start({ nodes: 1 });
  try {
    const backend = await spawnEcho({ instanceId: 'bench-1', nats: cluster.servers });
    children.push(backend.child);
    const gateway = await startGateway(cluster.servers);
    const targets: Array<[string, number]> = [
      ['direct', backend.port],
      ['gateway', gateway.port],
      ['nginx', await startNginx(backend.port)],
      ['haproxy', await startHaproxy(backend.port)],
      ['node:http2 pipe', await startPipeProxy(backend.port)],
    ];
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
    console.log(
      `\nGateway benchmark: ${versions.join('; ')}; node ${process.version}; ` +
        `h2load -t1 -c${CLIENTS} -m${STREAMS_PER_CLIENT}, ${SECONDS} s per case after 1 s warm-up`,
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

    // Where the gateway's time goes: the first case again, under the CPU profiler.
    gateway.child.kill('SIGTERM');
    await new Promise((resolve) => gateway.child.once('exit', resolve));
    const profileDir = join(dir, 'profile');
    const profiled = await startGateway(cluster.servers, profileDir);
    const p = await h2load(profiled.port, cases[0]!);
    profiled.child.kill('SIGTERM');
    await new Promise((resolve) => profiled.child.once('exit', resolve));
    console.log(
      `\nCPU profile of the gateway, ${cases[0]!.name} (${fmt(p.rps, 0)} calls/s while profiled), self time while busy (idle left out):`,
    );
    for (const line of profileSummary(profileDir, 15)) console.log(`  ${line}`);
  } finally {
    stopping = true;
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    await cluster.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
