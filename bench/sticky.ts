/**
 * Sticky routing (`lb.policy=user`) on a real 3-node cluster:
 *
 * 1. routing cost with PREFS stored preferences (default 100,000), in-process at the
 *    routing level (bearer parse + verified-token cache + balancer pick on the
 *    gateway's live route, against round robin on the same route), then through the
 *    gateway with a short grpc-js load (user policy vs round robin, same run);
 * 2. propagation of a new preference from gateway A (bus connection to n0) to
 *    gateway B's local view (connection to n2): p50/p99 over sequential decisions;
 * 3. start to ready of a fresh gateway holding the bucket: the bucket is filled to
 *    1,000,000 preferences (published without waiting for each acknowledgement, in
 *    chunks the stream confirms, for at most FILL_SECONDS, default 180); then the
 *    compiled gateway is started (`node <flags> dist/services/gateway/main.js`, its bus
 *    on n1) with deploy/local/mesh.yaml's Node flags (A) and with Node's default young
 *    generation (B), in the order A B B A, each timed from spawn until its admin
 *    `/readyz` answers 200,
 *    which it does once the registry and affinity views are loaded; its RSS then
 *    (VmRSS), its peak (VmHWM) and its CPU time (user + system), which the machine's
 *    other load disturbs less than the wall time, are read from /proc. The load time
 *    is extrapolated linearly to 1,000,000 only when the fill ran out of time.
 *
 * Usage: bash bench/run.sh sticky [--prefs N] [--fill-seconds S] [--load-seconds S]
 */
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { jetstreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import { SignJWT } from 'jose';
import { pino } from 'pino';
import {
  AffinityBucket,
  type AffinityPreference,
  Bus,
  Codecs,
  Keys,
  type KvStore,
  kvStream,
  Subjects,
} from '../bus/index.js';
import { cpuMsOf } from '../services/common/proc.js';
import { sleep } from '../services/common/sleep.js';
import { type CallContext, RoundRobin } from '../services/gateway/balancer.js';
import { gatewayConfigSchema } from '../services/gateway/config.js';
import { Gateway } from '../services/gateway/gateway.js';
import { Identities } from '../services/gateway/identity.js';
import { ECHO_SERVICE, echoClient } from '../test/support/echo-service.js';
import { register } from '../test/support/gateway.js';
import { NatsCluster } from '../test/support/nats-cluster.js';
import { freePort } from '../test/support/ports.js';
import { type EchoProcess, spawnEcho } from '../test/support/processes.js';
import { rawConnection } from '../test/support/raw-nats.js';
import { until } from '../test/support/wait.js';

const MESH = 'bench-mesh-secret-0123456789';
const JWT = 'bench-jwt-secret-0123456789-0123456789';
const silent = pino({ level: 'silent' });
const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};

function userKeyOf(user: string): string {
  return createHmac('sha256', MESH)
    .update(JSON.stringify(['', user]))
    .digest('base64url');
}

/** Writes preferences for users `user-<from>`… concurrently until `to` or the deadline. */
async function fill(
  store: KvStore<AffinityPreference>,
  from: number,
  to: number,
  deadline: number,
): Promise<number> {
  const WINDOW = 256;
  let next = from;
  const now = Date.now();
  const worker = async () => {
    while (next < to && Date.now() < deadline) {
      const i = next++;
      await store.put({
        serviceId: 'echo',
        userKey: userKeyOf(`user-${i}`),
        instanceId: `echo-${(i % 3) + 1}`,
        createdAtMs: now,
        lastSeenAtMs: now,
        idleSeconds: 28_800,
        gatewayId: 'bench',
      });
    }
  };
  await Promise.all(Array.from({ length: WINDOW }, worker));
  return next;
}

/**
 * Writes preferences for users `user-<from>`… as fast as the bus stores them: published
 * without waiting for acknowledgements, a chunk at a time, each chunk waiting until the
 * stream holds it (so the servers' ingest queues never overflow), until `to` or the
 * deadline. Values are those `KvStore.put` writes (codec, TTL header). Returns the user
 * index after the last stored (as counted by the stream).
 */
async function fillFast(
  servers: string[],
  from: number,
  to: number,
  deadline: number,
): Promise<number> {
  const CHUNK = 20_000;
  const connection = await rawConnection(servers);
  const jsm = await jetstreamManager(connection);
  const stream = kvStream(AffinityBucket.name);
  const lastSeq = async () => (await jsm.streams.info(stream)).state.last_seq;
  const now = Date.now();
  const h = headers();
  h.set('Nats-TTL', '28800s');
  const startSeq = await lastSeq();
  let next = from;
  while (next < to && Date.now() < deadline) {
    const end = Math.min(to, next + CHUNK);
    for (; next < end; next++) {
      const value: AffinityPreference = {
        serviceId: 'echo',
        userKey: userKeyOf(`user-${next}`),
        instanceId: `echo-${(next % 3) + 1}`,
        createdAtMs: now,
        lastSeenAtMs: now,
        idleSeconds: 28_800,
        gatewayId: 'bench',
      };
      connection.publish(
        Subjects.kv(AffinityBucket.name, AffinityBucket.key(value)),
        Codecs.affinityPreference.encode(value),
        { headers: h },
      );
    }
    await connection.flush();
    // A message the servers dropped would never arrive: the deadline bounds this wait too.
    while ((await lastSeq()) < startSeq + (next - from) && Date.now() < deadline) {
      await sleep(20);
    }
  }
  // Cut short by the deadline, a chunk may still be landing: count it once it settled.
  let stored = (await lastSeq()) - startSeq;
  for (let settled = 0; settled < 5 && stored < next - from; ) {
    await sleep(100);
    const count = (await lastSeq()) - startSeq;
    settled = count === stored ? settled + 1 : 0;
    stored = count;
  }
  await connection.close();
  return from + stored;
}

/** A gateway process at the moment it answered ready, as the system accounts for it. */
interface FreshGateway {
  readonly readyMs: number;
  readonly cpuMs: number;
  readonly rssMB: number;
  readonly peakMB: number;
  /** Its `halyard_gateway_affinity_preferences`. */
  readonly preferences: number;
}

/**
 * Node's flags for the fresh gateway: deploy/local/mesh.yaml's (a 1 MB young generation
 * keeps an idle component small), and Node's default young generation, which a load of
 * a million messages may want.
 */
const GATEWAY_NODE_FLAGS = [
  ['--enable-source-maps', '--max-semi-space-size=1'],
  ['--enable-source-maps'],
] as const;

/**
 * Starts the compiled gateway (`node <nodeFlags> dist/services/gateway/main.js`), times it from spawn to its
 * admin `/readyz` answering 200 (polled every 10 ms), reads its memory and CPU time from
 * /proc at that moment and its preference count from `/metrics`, then stops it.
 */
async function freshGateway(nats: string, nodeFlags: readonly string[]): Promise<FreshGateway> {
  const admin = await freePort();
  const args = [
    ...nodeFlags,
    'dist/services/gateway/main.js',
    '--id',
    'bench-fresh',
    '--listen',
    `127.0.0.1:${await freePort()}`,
    '--admin',
    `127.0.0.1:${admin}`,
  ];
  const started = performance.now();
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      ...process.env,
      HALYARD_NATS: nats,
      HALYARD_GATEWAY_MESH_SECRET: MESH,
      HALYARD_GATEWAY_JWT_SECRET: JWT,
      HALYARD_LOG_LEVEL: 'warn',
    },
  });
  const exited = once(child, 'exit');
  const pid = child.pid!;
  try {
    const deadline = started + 10 * 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the gateway exited (${child.exitCode})`);
      if (performance.now() > deadline) throw new Error('the gateway was not ready in 10 min');
      const ready = await fetch(`http://127.0.0.1:${admin}/readyz`)
        .then((r) => r.ok)
        .catch(() => false);
      if (ready) break;
      await sleep(10);
    }
    const readyMs = performance.now() - started;
    const cpuMs = cpuMsOf(pid);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    if (cpuMs === undefined) throw new Error('the gateway is gone');
    const kib = (field: string) =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1]);
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    const preferences = Number(/^halyard_gateway_affinity_preferences (\S+)$/m.exec(metrics)?.[1]);
    return {
      readyMs,
      cpuMs,
      rssMB: kib('VmRSS') / 1024,
      peakMB: kib('VmHWM') / 1024,
      preferences,
    };
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function load(
  port: number,
  seconds: number,
  metadataFor: (i: number) => grpc.Metadata,
): Promise<{ rps: number; failed: number }> {
  const clients = Array.from({ length: 4 }, () => echoClient(`127.0.0.1:${port}`));
  const end = Date.now() + seconds * 1000;
  let done = 0;
  let failed = 0;
  let n = 0;
  const worker = async (c: number) => {
    const client = clients[c % clients.length]!;
    while (Date.now() < end) {
      await new Promise<void>((resolve) =>
        client.unary({ payload: Buffer.alloc(100, 1) }, metadataFor(n++), {}, (error) => {
          if (error) failed++;
          else done++;
          resolve();
        }),
      );
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: 64 }, (_, c) => worker(c)));
  const elapsed = (performance.now() - started) / 1000;
  for (const client of clients) client.close();
  return { rps: done / elapsed, failed };
}

async function main(): Promise<void> {
  const PREFS = arg('prefs', 100_000);
  const FILL_SECONDS = arg('fill-seconds', 180);
  const LOAD_SECONDS = arg('load-seconds', 5);
  const cluster = await NatsCluster.start();
  const echoes: EchoProcess[] = [];
  const gateways: Gateway[] = [];
  try {
    const busA = await Bus.connect({
      servers: [cluster.servers[0]!],
      name: 'bench-a',
      logger: silent,
    });
    const busB = await Bus.connect({
      servers: [cluster.servers[2]!],
      name: 'bench-b',
      logger: silent,
    });
    await busA.provision();
    const store = await busA.store(AffinityBucket);
    const version = busA.server.version;
    let started = performance.now();
    const filled = await fill(store, 0, PREFS, Date.now() + 10 * 60_000);
    const fillSeconds = (performance.now() - started) / 1000;
    console.log(
      `nats-server ${version}; ${filled} preferences written in ${fillSeconds.toFixed(1)} s (256 concurrent puts, R3)`,
    );

    for (let i = 1; i <= 3; i++) echoes.push(await spawnEcho({ instanceId: `echo-${i}` }));
    const registerAll = async (metadata: Record<string, string>) => {
      for (const echo of echoes) {
        await register(busA, {
          instanceId: echo.instanceId,
          address: `127.0.0.1:${echo.port}`,
          metadata,
        });
      }
    };
    await registerAll({ 'lb.policy': 'user' });
    const config = (id: string, servers: string[]) =>
      gatewayConfigSchema.parse({
        id,
        bus: { servers },
        listen: { host: '127.0.0.1', port: 0 },
        admin: { port: 0 },
        routing: { exposeInternal: [ECHO_SERVICE] },
        affinity: { meshSecret: MESH, jwt: { hs256Secret: JWT } },
      });
    started = performance.now();
    const a = await Gateway.start(config('bench-a', [cluster.servers[0]!]), busA, silent);
    gateways.push(a);
    await a.ready();
    const aReadyMs = performance.now() - started;
    const b = await Gateway.start(config('bench-b', [cluster.servers[2]!]), busB, silent);
    gateways.push(b);
    await b.ready();
    await until(
      'route',
      () =>
        a.table.route(ECHO_SERVICE)?.settings.policy === 'user' &&
        a.table.route(ECHO_SERVICE)!.endpoints.every((e) => e.available),
    );
    console.log(`gateway A ready with ${a.affinity.size} preferences in ${aReadyMs.toFixed(0)} ms`);

    // 1a. In-process: what a call costs the gateway to choose, user vs round robin.
    const route = a.table.route(ECHO_SERVICE)!;
    const identities = await Identities.load({ meshSecret: MESH, hs256Secret: JWT });
    const USERS = 1000;
    const tokens: string[] = [];
    const secret = new TextEncoder().encode(JWT);
    for (let i = 0; i < USERS; i++) {
      const jwt = await new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(`user-${i * 97}`)
        .setExpirationTime('1h')
        .sign(secret);
      tokens.push(jwt);
      await identities.verify(jwt);
    }
    const headers = tokens.map((t) => `Bearer ${t}`);
    const contexts: CallContext[] = [];
    for (let i = 0; i < PREFS; i += Math.max(1, Math.floor(PREFS / 100_000))) {
      contexts.push({ headers: {}, userKey: userKeyOf(`user-${i}`) });
    }
    const ITER = 1_000_000;
    const rr = new RoundRobin();
    const timeIt = (fn: (i: number) => unknown) => {
      for (let i = 0; i < 50_000; i++) fn(i);
      const t = performance.now();
      for (let i = 0; i < ITER; i++) fn(i);
      return (performance.now() - t) / ITER;
    };
    const rrMs = timeIt(() => rr.pick(route.endpoints, undefined));
    const userMs = timeIt((i) => {
      const token = Identities.bearer(headers[i % USERS]);
      identities.cached(token!);
      return route.balancer.pick(route.endpoints, undefined, contexts[i % contexts.length]);
    });
    const lookupOnlyMs = timeIt((i) =>
      route.balancer.pick(route.endpoints, undefined, contexts[i % contexts.length]),
    );

    // 1b. Through the gateway: user policy (1000 users' tokens) vs round robin.
    const userMeta = headers.map((h) => {
      const m = new grpc.Metadata();
      m.set('authorization', h);
      return m;
    });
    // Alternating rounds, best of two each: the order and JIT warm-up favour neither.
    const policy = async (name: 'user' | 'round-robin') => {
      await registerAll({ 'lb.policy': name });
      await until(name, () => a.table.route(ECHO_SERVICE)?.settings.policy === name);
    };
    const empty = new grpc.Metadata();
    await load(a.port, 2, (i) => userMeta[i % USERS]!); // warm-up; every token verified once
    let user = { rps: 0, failed: 0 };
    let roundRobin = { rps: 0, failed: 0 };
    for (let round = 0; round < 2; round++) {
      await policy('round-robin');
      const r = await load(a.port, LOAD_SECONDS, () => empty);
      if (r.rps > roundRobin.rps) roundRobin = r;
      await policy('user');
      const u = await load(a.port, LOAD_SECONDS, (i) => userMeta[i % USERS]!);
      if (u.rps > user.rps) user = u;
    }

    // 2. Propagation: a decision on A → B's local view.
    const bView = (await busB.store(AffinityBucket)).view();
    await bView.ready;
    const waiting = new Map<string, () => void>();
    bView.onChange((change) => waiting.get(change.key)?.());
    const samples: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const key = userKeyOf(`new-${i}`);
      const seen = new Promise<void>((resolve) => waiting.set(Keys.affinity('echo', key), resolve));
      const t = performance.now();
      a.affinity.assign('echo', key, 'echo-2', 28_800);
      await seen;
      samples.push(performance.now() - t);
    }
    bView.stop();
    samples.sort((x, y) => x - y);

    for (const g of gateways.splice(0)) await g.stop();

    // 3. Start to ready, memory and CPU time of a fresh gateway holding the bucket.
    started = performance.now();
    const total = await fillFast(
      cluster.servers,
      PREFS,
      1_000_000,
      Date.now() + FILL_SECONDS * 1000,
    );
    const moreSeconds = (performance.now() - started) / 1000;
    const fresh: (FreshGateway & { flags: string; loadBefore: number; loadAfter: number })[] = [];
    // A B B A: neither set of flags always comes first (warmer server caches, less load).
    for (const flags of [...GATEWAY_NODE_FLAGS, ...[...GATEWAY_NODE_FLAGS].reverse()]) {
      const loadBefore = loadavg()[0]!;
      const gateway = await freshGateway(cluster.servers[1]!, flags);
      fresh.push({ ...gateway, flags: flags.join(' '), loadBefore, loadAfter: loadavg()[0]! });
    }

    const f = (x: number, d = 1) => x.toFixed(d);
    console.log('\nRouting cost, in-process on the live route of gateway A (1,000,000 picks)');
    console.log('| case | ns per call | ratio to round robin (throughput) |\n|---|---|---|');
    console.log(`| round robin pick | ${f(rrMs * 1e6, 0)} | 1.00× |`);
    console.log(
      `| user: bearer parse + token cache + preference look-up + pick, ${filled} stored | ${f(userMs * 1e6, 0)} | ${f(rrMs / userMs, 2)}× |`,
    );
    console.log(
      `| user: preference look-up + pick only | ${f(lookupOnlyMs * 1e6, 0)} | ${f(rrMs / lookupOnlyMs, 2)}× |`,
    );
    console.log(
      `\nThrough gateway A (grpc-js, 4 connections × 16 calls in flight, unary 100 B, best of 2 alternating rounds of ${LOAD_SECONDS} s, client in the same process)`,
    );
    console.log('| case | calls/s | failed | ratio |\n|---|---|---|---|');
    console.log(`| round robin | ${f(roundRobin.rps, 0)} | ${roundRobin.failed} | 1.00× |`);
    console.log(
      `| user policy, 1000 users with a token, ${filled} stored | ${f(user.rps, 0)} | ${user.failed} | ${f(user.rps / roundRobin.rps, 2)}× |`,
    );
    console.log(
      '\nPropagation of a new preference: decision on A (n0) → local view of B (n2), 1000 sequential',
    );
    console.log(
      `| p50 ms | p99 ms | max ms |\n|---|---|---|\n| ${f(percentile(samples, 50), 3)} | ${f(percentile(samples, 99), 3)} | ${f(samples.at(-1)!, 3)} |`,
    );
    console.log(
      `\nFresh compiled gateway loading the bucket (${total} preferences written; ${total - PREFS} of them in ${f(moreSeconds)} s), one after the other: node <flags> dist/services/gateway/main.js`,
    );
    console.log(
      '| node flags | preferences | load average at spawn / once stopped | spawn → ready s | CPU s | RSS MB at ready | peak RSS MB | load ≤ 5 s | RSS ≤ 300 MB |\n|---|---|---|---|---|---|---|---|---|',
    );
    for (const g of fresh) {
      const full = g.preferences >= 1_000_000;
      const scaled = full
        ? ''
        : ` (${f((g.readyMs / 1000) * (1_000_000 / g.preferences), 2)} per 1,000,000)`;
      const verdict = (met: boolean) => (full ? (met ? 'met' : 'missed') : 'not at 1,000,000');
      console.log(
        `| \`${g.flags}\` | ${g.preferences} | ${f(g.loadBefore)} / ${f(g.loadAfter)} | ${f(g.readyMs / 1000, 2)}${scaled} | ${f(g.cpuMs / 1000, 2)} | ${f(g.rssMB, 0)} | ${f(g.peakMB, 0)} | ${verdict(g.readyMs <= 5000)} | ${verdict(Math.max(g.rssMB, g.peakMB) <= 300)} |`,
      );
    }
    await busA.close();
    await busB.close();
  } finally {
    for (const g of gateways) await g.stop();
    for (const echo of echoes) await echo.kill();
    await cluster.close();
  }
  process.exit(0);
}

await main();
