/**
 * One request, one execution: the instance running a call is killed mid-call, and the
 * test counts on every instance how many times the request ran. A call that may have
 * run is never run a second time, unless its service declared the method idempotent.
 */
import assert from 'node:assert/strict';
import { constants, createServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type Bus, Keys, RegistryBucket } from '../../bus/index.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { type CountingEcho, spawnCountingEcho } from '../support/echo-executions.js';
import {
  ECHO_SERVICE,
  type EchoResponse,
  echoClient,
  startEchoServer,
} from '../support/echo-service.js';
import { register, routed, startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const UNARY = `${ECHO_SERVICE}/Unary`;

describe('one request, one execution', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let gateway: Gateway;
  const echoes: CountingEcho[] = [];
  const logs = captureLogs('info');

  /** Registers these instances as the whole `echo` service, with these lb.* settings. */
  async function serve(instances: CountingEcho[], metadata: Record<string, string>) {
    for (const echo of instances) {
      await register(bus, { instanceId: echo.instanceId, address: echo.address, metadata });
    }
    for (const echo of instances) await routed(gateway, ECHO_SERVICE, echo.instanceId);
    await until('lb.* settings routed', () =>
      gateway.table
        .route(ECHO_SERVICE)
        ?.settings.idempotentMethods.join(',')
        .startsWith(metadata['lb.idempotentMethods'] ?? ''),
    );
  }

  /** Starts a slow call, kills the instance that runs it, and returns the outcome. */
  async function killMidCall(payload: string, candidates: CountingEcho[]) {
    const client = echoClient(`127.0.0.1:${gateway.port}`);
    const outcome = new Promise<{ error: grpc.ServiceError | null; reply?: EchoResponse }>(
      (resolve) =>
        client.unary(
          { payload: Buffer.from(payload), delayMs: 3000 },
          new grpc.Metadata(),
          { deadline: Date.now() + 20_000 },
          (error, reply) => resolve({ error, reply }),
        ),
    );
    const runner = await until(`${payload} running on an instance`, () =>
      candidates.find((echo) => echo.executions(payload) > 0),
    );
    await runner.kill('SIGKILL');
    const result = await outcome;
    client.close();
    return { runner, ...result };
  }

  /**
   * Waits until a later call ran on every survivor: their reports are in order, so any
   * earlier execution of the killed call would have been reported by then.
   */
  async function settled(survivors: CountingEcho[], marker: string) {
    const client = echoClient(`127.0.0.1:${gateway.port}`);
    for (let i = 0; survivors.some((echo) => echo.executions(marker) === 0); i++) {
      await new Promise((resolve) =>
        client.unary({ payload: Buffer.from(marker) }, new grpc.Metadata(), {}, resolve),
      );
      assert.ok(i < 50, 'every survivor takes calls');
    }
    client.close();
  }

  before(async () => {
    ({ cluster, bus } = await startBusCluster('executions-test', logs.logger));
    for (let i = 1; i <= 3; i++) echoes.push(await spawnCountingEcho(`echo-${i}`));
    gateway = await startGateway(bus, cluster.servers, logs.logger);
  });
  after(async () => {
    await gateway?.stop();
    for (const echo of echoes) await echo.kill();
    await bus?.close();
    await cluster?.close();
  });

  test('an instance killed mid-call: the call is not run again elsewhere, the client is told it may have run', async () => {
    const [a, b] = echoes;
    await serve([a!, b!], {});
    const { runner, error } = await killMidCall('once', [a!, b!]);
    const survivor = runner === a ? b! : a!;
    assert.equal(error?.code, grpc.status.UNAVAILABLE);
    assert.match(
      error!.details,
      new RegExp(
        `^connection to instance ${runner.instanceId} of echo lost before it answered; the call may have run, so it was not retried`,
      ),
    );
    await settled([survivor], 'after-once');
    assert.equal(runner.executions('once'), 1);
    assert.equal(survivor.executions('once'), 0, 'never executed a second time');
  });

  test('a method declared in lb.idempotentMethods is retried on another instance', async () => {
    const alive = echoes.filter((echo) => echo.executions('once') === 0);
    assert.equal(alive.length, 2);
    // The instance killed before deregisters, as its lease would lapse.
    const killed = echoes.find((echo) => echo.executions('once') === 1)!;
    await (await bus.store(RegistryBucket)).remove(Keys.registry('echo', killed.instanceId));
    await until('killed instance unrouted', () =>
      gateway.table.route(ECHO_SERVICE)?.endpoints.every((e) => e.id !== killed.instanceId),
    );
    await serve(alive, { 'lb.idempotentMethods': UNARY });
    const { runner, error, reply } = await killMidCall('again', alive);
    const survivor = alive.find((echo) => echo !== runner)!;
    assert.equal(error, null);
    assert.equal(reply?.instanceId, survivor.instanceId);
    assert.equal(runner.executions('again'), 1);
    assert.equal(survivor.executions('again'), 1, 'run again on the other instance');
  });

  test('an instance that answers a call with GOAWAY below it did not run it: the call runs once, elsewhere', async () => {
    const registry = await bus.store(RegistryBucket);
    for (const echo of echoes) await registry.remove(Keys.registry('echo', echo.instanceId));
    // An instance shutting down: it answers the first call of a connection (an empty
    // reply, instance id ""), then refuses each new call with a GOAWAY whose last stream
    // id is below it, and never processes it. (Node sends a last stream id of 0 as the
    // last one processed, hence the answered first call.)
    const leaving = createServer();
    let refused = 0;
    leaving.on('stream', (stream) => {
      stream.on('error', () => {});
      if (stream.id === 1) {
        stream.respond(
          { ':status': 200, 'content-type': 'application/grpc' },
          { waitForTrailers: true },
        );
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.resume();
        stream.end(Buffer.alloc(5));
        return;
      }
      refused++;
      stream.session?.goaway(constants.NGHTTP2_NO_ERROR, stream.id! - 2);
    });
    await new Promise<void>((resolve) => leaving.listen(0, '127.0.0.1', resolve));
    const ran = new Map<string, number>();
    const staying = await startEchoServer({
      instanceId: 'staying',
      onUnary: (request) => {
        const payload = Buffer.from(request.payload ?? []).toString();
        ran.set(payload, (ran.get(payload) ?? 0) + 1);
      },
    });
    try {
      await register(bus, {
        instanceId: 'leaving',
        address: `127.0.0.1:${(leaving.address() as AddressInfo).port}`,
      });
      await register(bus, { instanceId: 'staying', address: staying.address });
      await until('only the two routed', () => {
        const ids = gateway.table.route(ECHO_SERVICE)?.endpoints.map((e) => e.id);
        return ids?.join(',') === 'leaving,staying';
      });
      const client = echoClient(`127.0.0.1:${gateway.port}`);
      for (let i = 0; i < 6; i++) {
        const reply = await new Promise<EchoResponse>((resolve, reject) =>
          client.unary(
            { payload: Buffer.from(`call-${i}`) },
            new grpc.Metadata(),
            { deadline: Date.now() + 5000 },
            (e, r) => (e ? reject(e) : resolve(r)),
          ),
        );
        const elsewhere = reply.instanceId === '' ? 1 : 0;
        assert.equal((ran.get(`call-${i}`) ?? 0) + elsewhere, 1, `call-${i} ran once`);
      }
      client.close();
      assert.ok(refused > 0, 'calls were refused by the leaving instance');
    } finally {
      leaving.close();
      await staying.stop();
    }
  });
});
