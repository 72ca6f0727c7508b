/**
 * A gateway of two worker processes (`--workers 2`) as a real process: ready only once
 * both workers are, calls served by both through one port, metrics summed over them, a
 * worker killed with SIGKILL restarted while calls keep flowing, and SIGTERM draining
 * every worker before the gateway exits; SIGKILL to the primary ends its workers too.
 * The gateway registers in discovery once, not once per worker (nor again when a
 * worker restarts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Bus, DiscoveryEvent } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { tokenDigest } from '../../services/common/callers.js';
import { procStat } from '../../services/common/proc.js';
import type { DiscoveryReplica } from '../../services/discovery/replica.js';
import { GATEWAY_SERVICE_ID } from '../../services/gateway/config.js';
import { GatewayLogIds } from '../../services/gateway/log-ids.js';
import { startBusCluster } from '../support/bus-cluster.js';
import {
  type ChildProcessHandle,
  spawnTs,
  startReplica as startDiscovery,
  TESTER_ACCESS,
  tokenFile,
} from '../support/discovery.js';
import {
  type EchoClient,
  type EchoServer,
  echoDefinition,
  startEchoServer,
} from '../support/echo-service.js';
import { register } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { freePort } from '../support/ports.js';
import { until } from '../support/wait.js';

const CLIENTS = 4;
const GATEWAY_TOKEN = 'gateway-token-for-workers-tests';
const { Kind } = halyard.discovery.v1.DiscoveryEvent;

/**
 * A client on its own connection (grpc-js shares one per target otherwise).
 * `keepalive`: HTTP/2 pings every second. A connection the primary hands to a worker
 * in the instant it dies is never answered (see the gateway's README): only a ping
 * tells its client before the call's deadline.
 */
function ownClient(address: string, keepalive = false): EchoClient {
  const Client = grpc.makeGenericClientConstructor(echoDefinition, 'Echo');
  return new Client(address, grpc.credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
    ...(keepalive ? { 'grpc.keepalive_time_ms': 1000, 'grpc.keepalive_timeout_ms': 1000 } : {}),
  }) as unknown as EchoClient;
}

function unary(client: EchoClient, delayMs = 0): Promise<grpc.ServiceError | undefined> {
  return new Promise((resolve) => {
    client.unary(
      { payload: Buffer.from('x'), delayMs },
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (error) => resolve(error ?? undefined),
    );
  });
}

async function admin(port: number, path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.text() };
}

/** Sum of a metric's samples whose line starts with `prefix` (name and labels). */
function sample(metrics: string, prefix: string): number {
  return metrics
    .split('\n')
    .filter((line) => line.startsWith(prefix))
    .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
}

interface WorkersGateway extends ChildProcessHandle {
  readonly address: string;
  readonly adminPort: number;
  /** Worker number → pid, of the workers whose readiness the primary logged, latest last. */
  readyWorkers(): Array<{ worker: number; pid: number; time: number }>;
}

async function spawnGateway(
  id: string,
  servers: string[],
  discovery: string,
): Promise<WorkersGateway> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const handle = spawnTs('services/gateway/main.ts', [
    ...['--id', id, '--workers', '2', '--nats', servers.join(',')],
    ...['--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`],
    ...['--expose-internal', 'halyard.testing.'],
    ...['--discovery', discovery, '--discovery-token-file', tokenFile(GATEWAY_TOKEN)],
  ]);
  return {
    ...handle,
    address: `127.0.0.1:${port}`,
    adminPort,
    readyWorkers: () =>
      handle.withId(GatewayLogIds.workerReady).map((line) => ({
        worker: Number(line.worker),
        pid: Number(line.pid),
        time: Number(line.time),
      })),
  };
}

describe('a gateway of two workers', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let echo: EchoServer;
  let discovery: DiscoveryReplica;
  /** Discovery's events about this gateway. */
  const events: DiscoveryEvent[] = [];
  let gateway: WorkersGateway;
  const clients: EchoClient[] = [];
  const logs = captureLogs('warn');

  const client = (keepalive = false): EchoClient => {
    const made = ownClient(gateway.address, keepalive);
    clients.push(made);
    return made;
  };

  before(async () => {
    ({ cluster, bus } = await startBusCluster('gateway-workers-test', logs.logger));
    echo = await startEchoServer({ instanceId: 'echo-w', recordCalls: false });
    await register(bus, { address: echo.address, instanceId: 'echo-w' });
    discovery = await startDiscovery(cluster, 'discovery-1', {
      access: {
        tokens: [...TESTER_ACCESS.tokens, { sha256: tokenDigest(GATEWAY_TOKEN), identity: 'gw' }],
        grants: {
          ...TESTER_ACCESS.grants,
          gw: { services: { [GATEWAY_SERVICE_ID]: [] }, read: false },
        },
      },
    });
    await bus.subscribe({ kind: 'discovery', from: 'new' }, ({ event }) => {
      if (event.serviceId === GATEWAY_SERVICE_ID) events.push(event);
    });
  });
  const registrations = () => events.filter((e) => e.kind === Kind.REGISTERED);
  after(async () => {
    for (const made of clients) made.close();
    if (gateway && gateway.child.exitCode === null) gateway.child.kill('SIGKILL');
    // Workers a failed test left behind.
    for (const { pid } of gateway?.readyWorkers() ?? []) {
      if ((procStat(pid)?.state ?? 'Z') !== 'Z') process.kill(pid, 'SIGKILL');
    }
    await discovery?.stop();
    await echo?.stop();
    await bus?.close();
    await cluster?.close();
  });

  test('/readyz says not ready until both workers are ready', async () => {
    gateway = await spawnGateway('gw-workers', cluster.servers, discovery.grpcAddress);
    const notReady = new Set<string>();
    const readyAt = await until(
      'the gateway ready',
      async () => {
        const reply = await admin(gateway.adminPort, '/readyz').catch(() => undefined);
        if (reply?.status === 503) notReady.add(reply.body.trim());
        return reply?.status === 200 ? Date.now() : undefined;
      },
      60_000,
    );
    assert.ok(notReady.size > 0, 'the gateway was seen starting');
    for (const reason of notReady) {
      assert.match(reason, /^not ready: is starting: [01] of 2 workers ready$/);
    }
    const ready = await until('both workers logged ready', () => {
      const seen = gateway.readyWorkers();
      return seen.length === 2 ? seen : undefined;
    });
    assert.deepEqual(ready.map((r) => r.worker).sort(), [1, 2]);
    assert.notEqual(ready[0]!.pid, ready[1]!.pid);
    for (const { time } of ready) {
      assert.ok(time <= readyAt, 'the primary was ready only after both workers were');
    }
    const [registered] = await until('the gateway registered', () =>
      registrations().length > 0 ? registrations() : undefined,
    );
    assert.equal(registered!.instanceId, 'gw-workers');
  });

  test('calls through the one port are served by both workers, and /metrics sums them', async () => {
    const CALLS_EACH = 25;
    const made = Array.from({ length: CLIENTS }, () => client());
    const errors = await Promise.all(
      made.map(async (c) => {
        const failed: grpc.ServiceError[] = [];
        for (let i = 0; i < CALLS_EACH; i++) {
          const error = await unary(c);
          if (error) failed.push(error);
        }
        return failed;
      }),
    );
    assert.deepEqual(errors.flat(), []);
    const metrics = (await admin(gateway.adminPort, '/metrics')).body;
    const byWorker = [1, 2].map((w) =>
      sample(metrics, `halyard_gateway_worker_calls_total{worker="${w}"}`),
    );
    assert.ok(
      byWorker.every((n) => n > 0),
      `each worker served calls: ${byWorker.join(', ')}`,
    );
    const total = sample(
      metrics,
      'halyard_gateway_requests_total{service="halyard.testing.v1.Echo",method="Unary",code="OK"}',
    );
    assert.equal(total, CLIENTS * CALLS_EACH, 'the calls counter is the sum over the workers');
    assert.equal(byWorker[0]! + byWorker[1]!, total);
    assert.match(metrics, /^halyard_gateway_worker_restarts_total 0$/m);
  });

  test('a worker killed with SIGKILL is restarted; only the calls it had in flight fail', async () => {
    const [victim] = gateway.readyWorkers();
    const made = Array.from({ length: 2 * CLIENTS }, () => client(true));
    // Every client's connection is up before the kill.
    await Promise.all(made.map((c) => unary(c)));

    let running = true;
    let exitSeenAt = Number.POSITIVE_INFINITY;
    const failures: Array<{ startedAt: number; code: number }> = [];
    let succeeded = 0;
    const load = Promise.all(
      made.map(async (c) => {
        while (running) {
          const startedAt = Date.now();
          const error = await unary(c, 5);
          if (error) failures.push({ startedAt, code: error.code });
          else succeeded++;
        }
      }),
    );
    await until('calls flowing', () => succeeded > 50);
    process.kill(victim!.pid, 'SIGKILL');
    await until('the primary saw the worker exit', () =>
      gateway.withId(GatewayLogIds.workerExited).length > 0 ? true : undefined,
    );
    exitSeenAt = Date.now();
    const restarted = await until(
      'the worker restarted and ready',
      () =>
        gateway.readyWorkers().find((r) => r.worker === victim!.worker && r.pid !== victim!.pid),
      60_000,
    );
    const atRestart = succeeded;
    await until('calls flowing after the restart', () => succeeded > atRestart + 50);
    running = false;
    await load;

    const [exited] = gateway.withId(GatewayLogIds.workerExited);
    assert.equal(exited!.worker, victim!.worker);
    assert.equal(exited!.signal, 'SIGKILL');
    assert.ok(
      failures.length <= made.length,
      `at most one call in flight per client: ${failures.length}`,
    );
    for (const failure of failures) {
      assert.equal(failure.code, grpc.status.UNAVAILABLE);
      assert.ok(failure.startedAt < exitSeenAt, 'a call that failed was in flight at the kill');
    }

    // New connections reach the restarted worker too.
    const fresh = Array.from({ length: CLIENTS }, () => client());
    assert.deepEqual(
      (await Promise.all(fresh.map(async (c) => [await unary(c), await unary(c)]))).flat(),
      Array(2 * CLIENTS).fill(undefined),
    );
    const metrics = (await admin(gateway.adminPort, '/metrics')).body;
    assert.ok(
      sample(metrics, `halyard_gateway_worker_calls_total{worker="${restarted.worker}"}`) > 0,
      'the restarted worker serves calls',
    );
    assert.match(metrics, /^halyard_gateway_worker_restarts_total 1$/m);
    assert.equal((await admin(gateway.adminPort, '/readyz')).status, 200);
    assert.equal(registrations().length, 1, 'registered once, not again by the restarted worker');
  });

  test('SIGTERM drains every worker: calls in flight finish, then the gateway exits', async () => {
    const made = Array.from({ length: CLIENTS }, () => client());
    await Promise.all(made.map((c) => unary(c)));
    const pids = gateway
      .readyWorkers()
      .slice(-2)
      .map((r) => r.pid);
    const inFlight = made.map((c) => unary(c, 1500));
    // The calls are in flight: both workers count them.
    await until('calls in flight on the workers', async () => {
      const metrics = (await admin(gateway.adminPort, '/metrics')).body;
      return sample(metrics, 'halyard_gateway_active_calls') === CLIENTS ? true : undefined;
    });
    gateway.child.kill('SIGTERM');
    await until('the gateway says it is stopping', async () => {
      const reply = await admin(gateway.adminPort, '/readyz');
      return reply.status === 503 && reply.body === 'not ready: is stopping\n' ? true : undefined;
    });
    assert.deepEqual(await Promise.all(inFlight), Array(CLIENTS).fill(undefined));
    assert.deepEqual(await gateway.exited, { code: 0, signal: null });
    assert.ok(
      events.some((e) => e.kind === Kind.DEREGISTERED && e.instanceId === 'gw-workers'),
      'the gateway left the registry',
    );
    assert.equal(registrations().length, 1);
    assert.equal(gateway.withId(GatewayLogIds.workersStopped).length, 1);
    assert.equal(gateway.withId(GatewayLogIds.workerExited).length, 1, 'no restart while stopping');
    for (const pid of pids) {
      assert.throws(() => process.kill(pid, 0), 'the worker is gone');
    }
  });
  test('a primary killed with SIGKILL takes its workers with it', async () => {
    gateway = await spawnGateway('gw-workers-killed', cluster.servers, discovery.grpcAddress);
    const ready = await until(
      'both workers ready',
      () => (gateway.readyWorkers().length === 2 ? gateway.readyWorkers() : undefined),
      60_000,
    );
    gateway.child.kill('SIGKILL');
    await gateway.exited;
    // Exited: gone, or a zombie left for whoever reaps orphans here.
    await until('the workers exited', () =>
      ready.every(({ pid }) => (procStat(pid)?.state ?? 'Z') === 'Z'),
    );
  });
});
