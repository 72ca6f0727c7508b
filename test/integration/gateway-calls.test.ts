import assert from 'node:assert/strict';
import { request as httpGet } from 'node:http';
import { createServer as createHttp2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type Bus, Keys, RegistryBucket } from '../../bus/index.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { gatewayMetrics } from '../../services/gateway/metrics.js';
import { startBusCluster } from '../support/bus-cluster.js';
import {
  ECHO_SERVICE,
  type EchoClient,
  type EchoRequest,
  type EchoResponse,
  type EchoServer,
  echoClient,
  startEchoServer,
} from '../support/echo-service.js';
import { InstanceStatus, register, routed, startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import { counterValue } from '../support/metrics.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

interface Outcome {
  messages: EchoResponse[];
  headers: Record<string, unknown>;
  trailers: Record<string, unknown>;
  code: number;
  details: string;
}

/** Runs one call of any kind and collects everything the client saw. */
function run(
  client: EchoClient,
  kind: 'unary' | 'serverStream' | 'clientStream' | 'bidi',
  requests: EchoRequest[],
  options: { metadata?: Record<string, string>; deadlineMs?: number } = {},
): Promise<Outcome> {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(options.metadata ?? {})) metadata.set(k, v);
  const callOptions = options.deadlineMs ? { deadline: Date.now() + options.deadlineMs } : {};
  return new Promise((resolve) => {
    const outcome: Outcome = { messages: [], headers: {}, trailers: {}, code: -1, details: '' };
    const collect = (call: grpc.ClientUnaryCall | grpc.ClientReadableStream<EchoResponse>) => {
      // Failures are read from the status; a stream's 'error' repeats it.
      (call as NodeJS.EventEmitter).on('error', () => {});
      call.on('metadata', (m: grpc.Metadata) => {
        outcome.headers = m.getMap();
      });
      call.on('status', (s: grpc.StatusObject) => {
        outcome.code = s.code;
        outcome.details = s.details;
        outcome.trailers = s.metadata.getMap();
        // Unary callbacks may come after the status; resolve on the next turn.
        setImmediate(() => resolve(outcome));
      });
    };
    const onReply = (_e: grpc.ServiceError | null, reply?: EchoResponse) => {
      if (reply) outcome.messages.push(reply);
    };
    if (kind === 'unary') {
      collect(client.unary(requests[0]!, metadata, callOptions, onReply));
    } else if (kind === 'serverStream') {
      const call = client.serverStream(requests[0]!, metadata, callOptions);
      call.on('data', (m: EchoResponse) => outcome.messages.push(m));
      collect(call);
    } else if (kind === 'clientStream') {
      const call = client.clientStream(metadata, callOptions, onReply);
      collect(call);
      for (const r of requests) call.write(r);
      call.end();
    } else {
      const call = client.bidi(metadata, callOptions);
      call.on('data', (m: EchoResponse) => outcome.messages.push(m));
      collect(call as unknown as grpc.ClientReadableStream<EchoResponse>);
      for (const r of requests) call.write(r);
      call.end();
    }
  });
}

/** What must match between a direct call and one through the gateway. */
function comparable(o: Outcome) {
  const strip = ({ date: _d, 'x-halyard-instance': _i, ...rest }: Record<string, unknown>) => rest;
  return { ...o, headers: strip(o.headers), trailers: strip(o.trailers) };
}

function adminGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpGet({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });
}

describe('calls through the gateway', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let gateway: Gateway;
  const echoes: EchoServer[] = [];
  let direct: EchoClient;
  let viaGateway: EchoClient;
  const logs = captureLogs('info');

  before(async () => {
    ({ cluster, bus } = await startBusCluster('calls-test', logs.logger));
    for (let i = 1; i <= 3; i++) {
      const echo = await startEchoServer({ instanceId: `echo-${i}` });
      echoes.push(echo);
      await register(bus, { instanceId: echo.instanceId, address: echo.address });
    }
    gateway = await startGateway(bus, cluster.servers, logs.logger);
    for (const echo of echoes) await routed(gateway, ECHO_SERVICE, echo.instanceId);
    direct = echoClient(echoes[0]!.address);
    viaGateway = echoClient(`127.0.0.1:${gateway.port}`);
  });
  after(async () => {
    direct?.close();
    viaGateway?.close();
    await gateway?.stop();
    for (const echo of echoes) await echo.stop();
    await bus?.close();
    await cluster?.close();
  });

  const cases: Array<[string, 'unary' | 'serverStream' | 'clientStream' | 'bidi', EchoRequest[]]> =
    [
      ['unary', 'unary', [{ payload: Buffer.from('ping'), trailers: { 'x-trailer': 'unary' } }]],
      [
        'server stream',
        'serverStream',
        [{ payload: Buffer.from('s'), responseCount: 5, trailers: { 'x-trailer': 'ss' } }],
      ],
      [
        'client stream',
        'clientStream',
        [
          { payload: Buffer.from('a') },
          { payload: Buffer.from('bc') },
          { payload: Buffer.from('d'), trailers: { 'x-trailer': 'cs' } },
        ],
      ],
      [
        'bidi',
        'bidi',
        [
          { payload: Buffer.from('1') },
          { payload: Buffer.alloc(20_000, 7) },
          { payload: Buffer.from('3'), trailers: { 'x-trailer': 'bidi' } },
        ],
      ],
      [
        'unary failing with a status and custom trailers',
        'unary',
        [{ failCode: 9, failMessage: 'précondition ✗ failed', trailers: { 'x-why': 'because' } }],
      ],
      [
        'server stream failing after messages',
        'serverStream',
        [
          {
            responseCount: 2,
            failCode: 10,
            failMessage: 'aborted midway',
            trailers: { 'x-n': '2' },
          },
        ],
      ],
    ];

  for (const [name, kind, requests] of cases) {
    test(`${name}: messages, headers, trailers and status match a direct call`, async () => {
      const metadata = { 'echo-request-id': `${kind}-42` };
      const directOutcome = await run(direct, kind, requests, { metadata });
      const gatewayOutcome = await run(viaGateway, kind, requests, { metadata });
      assert.ok(directOutcome.code >= 0, 'the direct call completed');
      // Which instance answered differs; everything else is the same.
      const strip = (o: Outcome) => ({
        ...comparable(o),
        messages: o.messages.map((m) => ({ ...m, instanceId: '' })),
      });
      assert.deepEqual(strip(gatewayOutcome), strip(directOutcome));
      if (gatewayOutcome.code === 0 || gatewayOutcome.messages.length > 0) {
        assert.equal(
          gatewayOutcome.headers['x-halyard-instance'],
          gatewayOutcome.messages[0]?.instanceId,
          'the response header names the instance that served the call',
        );
      }
    });
  }

  test('a trailers-only response from the instance passes through as trailers-only', async () => {
    const outcome = await run(viaGateway, 'unary', [{ failCode: 7, failMessage: 'nope' }]);
    assert.equal(outcome.code, grpc.status.PERMISSION_DENIED);
    assert.equal(outcome.details, 'nope');
    assert.match(String(outcome.trailers['x-halyard-instance']), /^echo-\d$/);
  });

  test('the deadline reaches the instance, and the gateway enforces it', async () => {
    const before = new Set(echoes.flatMap((e) => e.calls));
    const started = Date.now();
    const outcome = await run(viaGateway, 'unary', [{ delayMs: 3000 }], { deadlineMs: 300 });
    assert.equal(outcome.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - started < 2000, 'the caller did not wait for the slow instance');
    const seen = await until('call seen by an instance', () =>
      echoes.flatMap((e) => e.calls).find((c) => !before.has(c)),
    );
    assert.ok(
      seen.deadline > started && seen.deadline <= started + 400,
      `the instance got the remaining deadline (${seen.deadline - started} ms)`,
    );
    await until('the instance saw the call end', () => seen.cancelled);
  });

  test('an instance that ignores its deadline: the gateway times out alone, mid-stream, and cancels its stream', async () => {
    // An instance that ignores grpc-timeout and keeps streaming, behind a gateway whose
    // deadline cap (400 ms) is shorter than the client's (10 s): only the gateway's own
    // timer can end the call.
    let upstreamClosed = false;
    const slow = createHttp2Server();
    slow.on('stream', (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      const emptyMessage = Buffer.alloc(5);
      const ticker = setInterval(() => stream.write(emptyMessage), 50);
      stream.on('close', () => {
        clearInterval(ticker);
        upstreamClosed = true;
      });
      stream.on('error', () => {});
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const slowPort = (slow.address() as AddressInfo).port;
    await register(bus, {
      serviceId: 'slow',
      instanceId: 'slow-1',
      address: `127.0.0.1:${slowPort}`,
      grpcServices: ['halyard.testing.v1.Slow'],
    });
    const capped = await startGateway(bus, cluster.servers, logs.logger, {
      id: 'gw-capped',
      limits: { maxTimeoutMs: 400 },
    });
    await routed(capped, 'halyard.testing.v1.Slow', 'slow-1');
    const client = new grpc.Client(`127.0.0.1:${capped.port}`, grpc.credentials.createInsecure());
    try {
      const started = Date.now();
      let messages = 0;
      const status = await new Promise<grpc.StatusObject>((resolve) => {
        const call = client.makeServerStreamRequest(
          '/halyard.testing.v1.Slow/Stream',
          (x: Buffer) => x,
          (x: Buffer) => x,
          Buffer.alloc(0),
          new grpc.Metadata(),
          { deadline: Date.now() + 10_000 },
        );
        call.on('data', () => messages++);
        call.on('error', () => {});
        call.on('status', resolve);
      });
      const elapsed = Date.now() - started;
      assert.equal(status.code, grpc.status.DEADLINE_EXCEEDED);
      assert.match(
        status.details,
        /^deadline exceeded in the gateway after \d+ ms \(1 attempt\(s\) on slow\)$/,
      );
      assert.ok(
        elapsed >= 400 && elapsed < 5000,
        `ended by the gateway's 400 ms cap (${elapsed} ms)`,
      );
      assert.ok(messages > 0, 'the response had started: the deadline ended it mid-stream');
      await until('the instance saw its stream cancelled', () => upstreamClosed);
    } finally {
      client.close();
      await capped.stop();
      await (await bus.store(RegistryBucket)).remove(Keys.registry('slow', 'slow-1'));
      await new Promise((resolve) => slow.close(resolve));
    }
  });

  test('client cancellation reaches the instance', async () => {
    const before = new Set(echoes.flatMap((e) => e.calls));
    const call = viaGateway.serverStream({ responseCount: 1000, delayMs: 20 });
    await new Promise((resolve) => call.once('data', resolve));
    call.on('error', () => {});
    call.cancel();
    const seen = echoes.flatMap((e) => e.calls).find((c) => !before.has(c))!;
    await until('the instance saw the cancellation', () => seen.cancelled);
    assert.ok(seen.sent < 1000);
  });

  test('round robin spreads calls evenly over three instances', async () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const outcome = await run(viaGateway, 'unary', [{ payload: Buffer.from('rr') }]);
      const id = outcome.messages[0]!.instanceId;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    assert.deepEqual([...counts.entries()].sort(), [
      ['echo-1', 100],
      ['echo-2', 100],
      ['echo-3', 100],
    ]);
  });

  test('an unknown gRPC service gets UNIMPLEMENTED naming it', async () => {
    const client = new grpc.Client(`127.0.0.1:${gateway.port}`, grpc.credentials.createInsecure());
    const error = await new Promise<grpc.ServiceError>((resolve) =>
      client.makeUnaryRequest(
        '/acme.orders.v1.Orders/Get',
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(0),
        (e) => resolve(e!),
      ),
    );
    client.close();
    assert.equal(error.code, grpc.status.UNIMPLEMENTED);
    assert.equal(error.details, 'no service registered for acme.orders.v1.Orders');
  });

  test('a service with no UP instance gets UNAVAILABLE saying how many exist and their states', async () => {
    const states = [InstanceStatus.DOWN, InstanceStatus.DOWN, InstanceStatus.DRAINING];
    for (const [i, status] of states.entries()) {
      await register(bus, {
        serviceId: 'orders',
        instanceId: `orders-${i + 1}`,
        address: `127.0.0.1:${echoes[i]!.port}`,
        grpcServices: ['acme.orders.v1.Orders'],
        status,
      });
    }
    await until(
      'orders routed',
      () => gateway.table.route('acme.orders.v1.Orders')?.endpoints.length === 3,
    );
    const client = new grpc.Client(`127.0.0.1:${gateway.port}`, grpc.credentials.createInsecure());
    const error = await new Promise<grpc.ServiceError>((resolve) =>
      client.makeUnaryRequest(
        '/acme.orders.v1.Orders/Get',
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(0),
        (e) => resolve(e!),
      ),
    );
    client.close();
    assert.equal(error.code, grpc.status.UNAVAILABLE);
    assert.equal(
      error.details,
      "all 3 instances of orders are down (2 DOWN, 1 DRAINING); retry later or check the service's health",
    );
  });

  test('an instance set DRAINING finishes its calls in flight and gets no new ones', async () => {
    const store = await bus.store(RegistryBucket);
    const slow = run(viaGateway, 'serverStream', [{ responseCount: 10, delayMs: 50 }], {});
    // Put the slow call on echo-2 for sure: wait until it is seen there.
    await until('a call in flight', () =>
      echoes.some((e) =>
        e.calls.some((c) => c.method === 'ServerStream' && !c.cancelled && c.sent < 10),
      ),
    );
    const busy = echoes.find((e) =>
      e.calls.some((c) => c.method === 'ServerStream' && !c.cancelled && c.sent < 10),
    )!;
    const current = (await store.get(`echo.${busy.instanceId}`))!.value;
    await store.put({ ...current, status: InstanceStatus.DRAINING });
    await routed(gateway, ECHO_SERVICE, busy.instanceId, false);
    const served = new Set<string>();
    for (let i = 0; i < 30; i++) {
      served.add((await run(viaGateway, 'unary', [{}])).messages[0]!.instanceId);
    }
    assert.ok(!served.has(busy.instanceId), 'no new calls reach the draining instance');
    const outcome = await slow;
    assert.equal(outcome.code, grpc.status.OK, 'the call in flight finished');
    assert.equal(outcome.messages.length, 10);
    await store.put({ ...current, status: InstanceStatus.UP, renewedAtMs: Date.now() });
    await routed(gateway, ECHO_SERVICE, busy.instanceId, true);
  });

  test('grpc.health.v1.Health/Check is answered by the gateway on its own port', async () => {
    // HealthCheckRequest is one string field: encoded by hand, the reply's second byte is the status.
    const client = new grpc.Client(`127.0.0.1:${gateway.port}`, grpc.credentials.createInsecure());
    const check = (service: string) =>
      new Promise<{ error: grpc.ServiceError | null; status?: number }>((resolve) => {
        const encoded = Buffer.concat([
          Buffer.from([0x0a, Buffer.byteLength(service)]),
          Buffer.from(service),
        ]);
        client.makeUnaryRequest(
          '/grpc.health.v1.Health/Check',
          (x: Buffer) => x,
          (x: Buffer) => x,
          service ? encoded : Buffer.alloc(0),
          (error, reply) => resolve({ error, status: reply?.[1] ?? 0 }),
        );
      });
    assert.deepEqual(await check(''), { error: null, status: 1 }, 'the gateway is SERVING');
    assert.deepEqual(await check(ECHO_SERVICE), { error: null, status: 1 });
    assert.deepEqual(
      await check('acme.orders.v1.Orders'),
      { error: null, status: 2 },
      'NOT_SERVING',
    );
    const unknown = await check('acme.nothing.v1.Nothing');
    assert.equal(unknown.error?.code, grpc.status.NOT_FOUND);
    client.close();
  });

  test('admin: /healthz, /readyz after the view is loaded, /metrics with the call counters', async () => {
    assert.equal((await adminGet(gateway.adminPort, '/healthz')).status, 200);
    assert.deepEqual(await adminGet(gateway.adminPort, '/readyz'), {
      status: 200,
      body: 'ready\n',
    });
    const metrics = (await adminGet(gateway.adminPort, '/metrics')).body;
    assert.match(
      metrics,
      /halyard_gateway_requests_total\{service="halyard.testing.v1.Echo",method="Unary",code="OK"\} \d+/,
    );
    assert.match(metrics, /halyard_gateway_request_duration_seconds_bucket/);
    assert.match(metrics, /halyard_gateway_upstream_sessions [1-9]/);
    assert.ok(
      (await counterValue(gatewayMetrics.requests, {
        service: '(unknown)',
        code: 'UNIMPLEMENTED',
      })) >= 1,
    );
  });
});
