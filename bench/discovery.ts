/**
 * Discovery on a real 3-node cluster, with comparators measured in the same run:
 *   - registration on replica 1 → Watch on replica 2, vs a raw KV put on A → local view on B;
 *   - view load of 10,000 registered instances: a discovery replica until SERVING, vs a bare
 *     local view of the bucket;
 *   - renewals of 10,000 instances at the default interval (5 s) for a bounded time,
 *     through gRPC Renew, vs raw KV puts on the same schedule, with the CPU time the two
 *     replicas and the three NATS servers spent per renewal (from /proc: a figure that
 *     says whether a missed rate is the code's cost or the machine being busy).
 * Every loop is bounded in count and time. Usage: node --import tsx bench/discovery.ts
 *   [--count N] [--instances N] [--seconds S]
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Bus, kvStream, RegistryBucket, type ServiceInstance } from '../bus/index.js';
import { halyard } from '../proto/gen/halyard.js';
import { cpuMsOf } from '../services/common/proc.js';
import { sleep } from '../services/common/sleep.js';
import { DiscoveryReplica } from '../services/discovery/replica.js';
import {
  spawnReplica,
  TESTER_ACCESS,
  TESTER_ACCESS_YAML,
  TestRegistryClient,
} from '../test/support/discovery.js';
import { NatsCluster } from '../test/support/nats-cluster.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    instances: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '20' },
  },
});
const COUNT = Number(values.count);
const INSTANCES = Number(values.instances);
const RENEW_SECONDS = Number(values.seconds);
const TIME_BUDGET_MS = 30_000;
const RENEW_INTERVAL_MS = 5000;
const logger = pino({ level: 'error' });
const WatchKind = halyard.discovery.v1.WatchResponse.Kind;

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;

function table(title: string, rows: Array<{ name: string; samples: number[] }>): void {
  const base = rows[0]!.samples;
  console.log(`\n${title}`);
  console.log('| case | n | p50 ms | p99 ms | p50 ratio | p99 ratio |');
  console.log('|---|---|---|---|---|---|');
  for (const { name, samples } of rows) {
    const s = [...samples].sort((a, b) => a - b);
    const p50 = percentile(s, 50);
    const p99 = percentile(s, 99);
    console.log(
      `| ${name} | ${s.length} | ${p50.toFixed(3)} | ${p99.toFixed(3)} | ${(
        p50 /
          percentile(
            [...base].sort((a, b) => a - b),
            50,
          )
      ).toFixed(2)}× | ${(
        p99 /
          percentile(
            [...base].sort((a, b) => a - b),
            99,
          )
      ).toFixed(2)}× |`,
    );
  }
}

function instance(serviceId: string, i: number, leaseSeconds = 15): ServiceInstance {
  const now = Date.now();
  return {
    serviceId,
    instanceId: `i-${i}`,
    address: `10.0.${(i >> 8) & 255}.${i & 255}:7000`,
    grpcServices: ['acme.orders.v1.Orders'],
    status: halyard.discovery.v1.InstanceStatus.UP,
    metadata: { 'lb.policy': 'round-robin' },
    leaseSeconds,
    registeredAtMs: now,
    renewedAtMs: now,
    launcherId: '',
    hostId: '',
    version: '1.0.0',
  };
}

async function startReplica(cluster: NatsCluster, replicaId: string, server: number) {
  const replica = await DiscoveryReplica.start({
    replicaId,
    bus: { servers: [cluster.servers[server]!] },
    grpcListen: '127.0.0.1:0',
    adminPort: 0,
    logger,
    access: TESTER_ACCESS,
  });
  await replica.loaded;
  return replica;
}

async function registrationVisible(c1: TestRegistryClient, c2: TestRegistryClient) {
  const waiting = new Map<string, () => void>();
  const watch = c2.watch('bench-reg');
  watch.on(
    'data',
    (m: { kind: number; instance?: { instanceId: string; renewedAtMs: number } }) => {
      if (m.kind === WatchKind.UPSERTED && m.instance) waiting.get(m.instance.instanceId)?.();
    },
  );
  watch.on('error', () => {});
  const samples: number[] = [];
  const deadline = performance.now() + TIME_BUDGET_MS;
  for (let i = -50; i < COUNT && performance.now() < deadline; i++) {
    const id = `r-${i < 0 ? `w${-i}` : i}`;
    const seen = new Promise<void>((resolve) => waiting.set(id, resolve));
    const start = performance.now();
    await c1.register({
      serviceId: 'bench-reg',
      instanceId: id,
      address: '127.0.0.1:7000',
      leaseSeconds: 300,
    });
    await seen;
    if (i >= 0) samples.push(performance.now() - start);
    waiting.delete(id);
  }
  watch.cancel();
  return samples;
}

async function kvPropagation(a: Bus, b: Bus) {
  const writer = await a.store(RegistryBucket);
  const view = (await b.store(RegistryBucket)).view();
  await view.ready;
  const waiting = new Map<string, () => void>();
  view.onChange((c) => {
    if (c.op === 'put') waiting.get(c.key)?.();
  });
  const samples: number[] = [];
  const deadline = performance.now() + TIME_BUDGET_MS;
  for (let i = -50; i < COUNT && performance.now() < deadline; i++) {
    const value = instance('bench-kv', i < 0 ? 100_000 - i : i, 300);
    const key = RegistryBucket.key(value);
    const seen = new Promise<void>((resolve) => waiting.set(key, resolve));
    const start = performance.now();
    await writer.put(value);
    await seen;
    if (i >= 0) samples.push(performance.now() - start);
    waiting.delete(key);
  }
  view.stop();
  return samples;
}

async function fill(bus: Bus, count: number): Promise<void> {
  const store = await bus.store(RegistryBucket);
  const BATCH = 200;
  for (let i = 0; i < count; i += BATCH) {
    await Promise.all(
      Array.from({ length: Math.min(BATCH, count - i) }, (_, j) =>
        store.put(instance('fleet', i + j, 300)),
      ),
    );
  }
}

async function viewLoad(cluster: NatsCluster, bus: Bus, rounds: number) {
  const replica: number[] = [];
  const bare: number[] = [];
  for (let round = 0; round < rounds; round++) {
    let start = performance.now();
    const r = await startReplica(cluster, `load-${round}`, round % 3);
    replica.push(performance.now() - start);
    await r.stop();
    start = performance.now();
    const view = (await bus.store(RegistryBucket)).view();
    await view.ready;
    bare.push(performance.now() - start);
    view.stop();
  }
  return { replica, bare };
}

interface RateResult {
  readonly sent: number;
  readonly failed: number;
  readonly latencies: number[];
  readonly elapsedMs: number;
  readonly maxLagMs: number;
}

/** Each of `count` instances fires once per interval at its own phase, for `seconds`. */
async function onSchedule(
  count: number,
  seconds: number,
  op: (i: number) => Promise<unknown>,
): Promise<RateResult> {
  const latencies: number[] = [];
  let failed = 0;
  let maxLagMs = 0;
  const inFlight = new Set<Promise<unknown>>();
  const start = performance.now();
  const end = start + seconds * 1000;
  let next = 0; // global index of the next due renewal
  while (performance.now() < end) {
    const now = performance.now();
    while (
      start + (next / count) * RENEW_INTERVAL_MS <= now &&
      start + (next / count) * RENEW_INTERVAL_MS < end
    ) {
      const due = start + (next / count) * RENEW_INTERVAL_MS;
      maxLagMs = Math.max(maxLagMs, now - due);
      const sentAt = performance.now();
      const p = op(next % count).then(
        () => latencies.push(performance.now() - sentAt),
        () => failed++,
      );
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      next++;
    }
    await sleep(2);
  }
  await Promise.all(inFlight);
  return { sent: next, failed, latencies, elapsedMs: performance.now() - start, maxLagMs };
}

/** CPU time (user + system) a process has used so far, in ms. */
function cpuMs(pid: number): number {
  const ms = cpuMsOf(pid);
  if (ms === undefined) throw new Error(`no process ${pid} to measure`);
  return ms;
}

interface CpuPids {
  readonly replicas: readonly number[];
  readonly servers: readonly number[];
}

/** `op` on schedule, with the CPU the replicas and the servers spent meanwhile. */
async function measured(
  pids: CpuPids,
  run: () => Promise<RateResult>,
): Promise<RateResult & { replicaCpuMs: number; serverCpuMs: number }> {
  const sum = (list: readonly number[]) => list.reduce((total, pid) => total + cpuMs(pid), 0);
  const replicasBefore = sum(pids.replicas);
  const serversBefore = sum(pids.servers);
  const result = await run();
  return {
    ...result,
    replicaCpuMs: sum(pids.replicas) - replicasBefore,
    serverCpuMs: sum(pids.servers) - serversBefore,
  };
}

function rateRow(
  name: string,
  r: RateResult & { replicaCpuMs: number; serverCpuMs: number },
): string {
  const s = [...r.latencies].sort((a, b) => a - b);
  const done = r.sent - r.failed;
  return `| ${name} | ${r.sent} | ${r.failed} | ${(done / (r.elapsedMs / 1000)).toFixed(0)} | ${percentile(s, 50).toFixed(2)} | ${percentile(s, 99).toFixed(2)} | ${r.maxLagMs.toFixed(0)} | ${((r.replicaCpuMs * 1000) / done).toFixed(0)} | ${((r.serverCpuMs * 1000) / done).toFixed(0)} |`;
}

async function main(): Promise<void> {
  const cluster = await NatsCluster.start();
  try {
    const a = await Bus.connect({ servers: cluster.servers[0]!, name: 'bench-a', logger });
    const b = await Bus.connect({ servers: cluster.servers[2]!, name: 'bench-b', logger });
    await a.provision();
    const leader = await cluster.streamLeader(kvStream(RegistryBucket.name));
    console.log(
      `nats-server ${a.server.version}; ${kvStream(RegistryBucket.name)} leader n${leader}; replica 1 / bus A on n0, replica 2 / bus B on n2`,
    );
    // The serving replicas run as their own processes, as in production, so the load
    // generator does not share their event loop.
    const dir = mkdtempSync(join(tmpdir(), 'halyard-bench-'));
    const config = join(dir, 'discovery.yaml');
    writeFileSync(
      config,
      `leases: { defaultSeconds: 15, minSeconds: 3, maxSeconds: 300 }\n${TESTER_ACCESS_YAML}\n`,
    );
    const serving = [cluster.servers[0]!, cluster.servers[2]!].map(
      (server) => ({ ...cluster, servers: [server] }) as NatsCluster,
    );
    const [r1, r2] = await Promise.all([
      spawnReplica(serving[0]!, 'bench-1', config),
      spawnReplica(serving[1]!, 'bench-2', config),
    ]);
    const c1 = new TestRegistryClient(r1.grpcAddress);
    const c2 = new TestRegistryClient(r2.grpcAddress);

    table('Registration visible on another replica', [
      {
        name: 'gRPC Register on replica 1 → Watch on replica 2',
        samples: await registrationVisible(c1, c2),
      },
      { name: 'raw KV put on A → local view on B', samples: await kvPropagation(a, b) },
    ]);

    const fillStart = performance.now();
    await fill(a, INSTANCES);
    console.log(
      `\n${INSTANCES} instances written in ${((performance.now() - fillStart) / 1000).toFixed(1)} s`,
    );
    const load = await viewLoad(cluster, b, 3);
    table(`View load, ${INSTANCES} registered instances (3 rounds)`, [
      { name: 'discovery replica start → SERVING', samples: load.replica },
      { name: 'bare local view of the bucket → ready', samples: load.bare },
    ]);

    const store = await a.store(RegistryBucket);
    // Leases long enough that the bench's own schedule, not a lapse, decides.
    const renew = (i: number) => (i % 2 ? c1 : c2).renew('fleet', `i-${i}`);
    const half = Math.floor(INSTANCES / 2);
    const pids: CpuPids = {
      replicas: [r1.child.pid!, r2.child.pid!],
      servers: cluster.nodes.map((node) => node.pid!),
    };
    const rows = [
      rateRow(
        `gRPC Renew, ${INSTANCES} instances`,
        await measured(pids, () => onSchedule(INSTANCES, RENEW_SECONDS, renew)),
      ),
      rateRow(
        `gRPC Renew, ${half} instances`,
        await measured(pids, () => onSchedule(half, RENEW_SECONDS, renew)),
      ),
      rateRow(
        `raw KV put, ${INSTANCES} instances`,
        await measured(pids, () =>
          onSchedule(INSTANCES, RENEW_SECONDS, (i) => store.put(instance('fleet', i, 300))),
        ),
      ),
    ];
    console.log(
      `\nRenewals every ${RENEW_INTERVAL_MS / 1000} s (the default) for ${RENEW_SECONDS} s, spread evenly; two replicas`,
    );
    console.log(
      '| case | sent | failed | per second | p50 ms | p99 ms | max schedule lag ms | replicas CPU µs per renewal | servers CPU µs per renewal |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const row of rows) console.log(row);

    c1.close();
    c2.close();
    for (const r of [r1, r2]) r.child.kill('SIGTERM');
    await Promise.all([r1.exited, r2.exited]);
    rmSync(dir, { recursive: true, force: true });
    await Promise.all([a.close(), b.close()]);
  } finally {
    await cluster.close();
  }
}

await main();
