import assert from 'node:assert/strict';
import { type ClientHttp2Session, connect, type IncomingHttpHeaders } from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Bus } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { gatewayMetrics } from '../../services/gateway/metrics.js';
import { startBusCluster } from '../support/bus-cluster.js';
import {
  ECHO_SERVICE,
  type EchoClient,
  type EchoServer,
  echoClient,
  startEchoServer,
} from '../support/echo-service.js';
import { register, routed, startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import { counterValue } from '../support/metrics.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const { EchoRequest } = halyard.testing.v1;

interface RawOutcome {
  status?: number;
  headers?: IncomingHttpHeaders;
  trailers?: IncomingHttpHeaders;
  body: string;
  rstCode?: number;
  error?: string;
}

const GRPC_HEADERS = { ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' };

/** A gRPC message frame: flag, length, protobuf bytes. */
function frame(request: Record<string, unknown>): Buffer {
  const bytes = EchoRequest.encode(EchoRequest.fromObject(request)).finish();
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

function raw(
  session: ClientHttp2Session,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const outcome: RawOutcome = { body: '' };
    const stream = session.request(headers);
    stream.on('response', (h) => {
      outcome.status = h[':status'];
      outcome.headers = h;
    });
    stream.on('trailers', (t) => {
      outcome.trailers = t;
    });
    stream.on('data', (chunk: Buffer) => {
      outcome.body += chunk.toString('latin1');
    });
    stream.on('error', (e) => {
      outcome.error = e.message;
    });
    stream.on('close', () => {
      outcome.rstCode = stream.rstCode;
      resolve(outcome);
    });
    stream.end(body);
  });
}

describe('bad input gets a proper error and leaves the gateway and other calls alone', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let gateway: Gateway;
  let echo: EchoServer;
  let client: EchoClient;
  let session: ClientHttp2Session;
  /** A long call that runs through every bad input and must finish OK. */
  let bystander: Promise<grpc.StatusObject>;
  const logs = captureLogs('info');
  const rejected = (reason: string) => counterValue(gatewayMetrics.rejected, { reason });

  /** Another call on another connection still works. */
  async function stillServing(): Promise<void> {
    const reply = await new Promise<unknown>((resolve, reject) =>
      client.unary({ payload: Buffer.from('ok') }, new grpc.Metadata(), {}, (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    );
    assert.ok(reply);
  }

  before(async () => {
    ({ cluster, bus } = await startBusCluster('bad-input', logs.logger));
    echo = await startEchoServer({ instanceId: 'echo-1' });
    await register(bus, { instanceId: 'echo-1', address: echo.address });
    gateway = await startGateway(bus, cluster.servers, logs.logger);
    await routed(gateway, ECHO_SERVICE, 'echo-1');
    client = echoClient(`127.0.0.1:${gateway.port}`);
    session = connect(`http://127.0.0.1:${gateway.port}`);
    const call = client.serverStream({ responseCount: 60, delayMs: 50 });
    call.on('data', () => {});
    call.on('error', () => {});
    bystander = new Promise((resolve) => call.on('status', resolve));
  });
  after(async () => {
    const status = await bystander;
    assert.equal(
      status.code,
      grpc.status.OK,
      'the call running through every bad input finished OK',
    );
    session?.close();
    client?.close();
    await gateway?.stop();
    await echo?.stop();
    await bus?.close();
    await cluster?.close();
  });

  test('HTTP/1.1: 505 with a plain explanation', async () => {
    const before = await rejected('http1');
    const response = await new Promise<string>((resolve) => {
      const socket = tcpConnect(gateway.port, '127.0.0.1', () =>
        socket.write(
          'POST /halyard.testing.v1.Echo/Unary HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n',
        ),
      );
      let text = '';
      socket.on('data', (c) => {
        text += c;
      });
      socket.on('close', () => resolve(text));
    });
    assert.match(response, /^HTTP\/1\.1 505 HTTP Version Not Supported\r\n/);
    assert.match(response, /this is a gRPC gateway: it speaks HTTP\/2 only/);
    assert.equal(await rejected('http1'), before + 1);
    await stillServing();
  });

  test('wrong content-type: HTTP 415', async () => {
    const before = await rejected('content-type');
    const outcome = await raw(
      session,
      {
        ...GRPC_HEADERS,
        ':path': `/${ECHO_SERVICE}/Unary`,
        'content-type': 'application/json',
      },
      Buffer.from('{}'),
    );
    assert.equal(outcome.status, 415);
    assert.match(outcome.body, /content-type must be application\/grpc, not application\/json/);
    assert.equal(await rejected('content-type'), before + 1);
    await stillServing();
  });

  test('missing te: trailers: HTTP 400', async () => {
    const before = await rejected('te');
    const { te: _te, ...headers } = GRPC_HEADERS;
    const outcome = await raw(
      session,
      { ...headers, ':path': `/${ECHO_SERVICE}/Unary` },
      frame({}),
    );
    assert.equal(outcome.status, 400);
    assert.match(outcome.body, /te: trailers/);
    assert.equal(await rejected('te'), before + 1);
    await stillServing();
  });

  test('not a POST: HTTP 405', async () => {
    const before = await rejected('method');
    const outcome = await raw(session, { ':method': 'GET', ':path': `/${ECHO_SERVICE}/Unary` });
    assert.equal(outcome.status, 405);
    assert.equal(await rejected('method'), before + 1);
  });

  for (const path of ['/nope', '/a/b/c', '//Unary', `/${ECHO_SERVICE}/`]) {
    test(`malformed path ${path}: UNIMPLEMENTED saying what a path looks like`, async () => {
      const before = await rejected('path');
      const outcome = await raw(session, { ...GRPC_HEADERS, ':path': path }, frame({}));
      assert.equal(outcome.status, 200);
      assert.equal(outcome.headers?.['grpc-status'], String(grpc.status.UNIMPLEMENTED));
      assert.equal(
        decodeURIComponent(String(outcome.headers?.['grpc-message'])),
        `malformed path ${JSON.stringify(path)}: expected /package.Service/Method`,
      );
      assert.equal(await rejected('path'), before + 1);
      await stillServing();
    });
  }

  test('oversized headers before the client knows the limit: RESOURCE_EXHAUSTED naming it', async () => {
    // The first request of a connection goes out before the client has the gateway's
    // SETTINGS (max header list size 16 KiB): the gateway checks it itself.
    const before = await rejected('header-size');
    const fresh = connect(`http://127.0.0.1:${gateway.port}`);
    const outcome = await raw(
      fresh,
      { ...GRPC_HEADERS, ':path': `/${ECHO_SERVICE}/Unary`, 'x-big': 'a'.repeat(40_000) },
      frame({}),
    );
    fresh.close();
    assert.equal(outcome.headers?.['grpc-status'], String(grpc.status.RESOURCE_EXHAUSTED));
    assert.match(
      decodeURIComponent(String(outcome.headers?.['grpc-message'])),
      /^request headers are \d+ bytes, over this gateway's limit of 16384: send less metadata$/,
    );
    assert.equal(await rejected('header-size'), before + 1);
    await stillServing();
  });

  test('oversized headers once the limit is known: the HTTP/2 layer resets the stream', async () => {
    const outcome = await raw(
      session,
      { ...GRPC_HEADERS, ':path': `/${ECHO_SERVICE}/Unary`, 'x-big': 'a'.repeat(40_000) },
      frame({}),
    );
    assert.equal(outcome.status, undefined, 'no response');
    assert.equal(outcome.rstCode, 11, 'RST_STREAM ENHANCE_YOUR_CALM');
    // The same connection carries the next call.
    const next = await raw(
      session,
      { ...GRPC_HEADERS, ':path': `/${ECHO_SERVICE}/Unary` },
      frame({}),
    );
    assert.equal(next.trailers?.['grpc-status'], '0');
    await stillServing();
  });

  test('a header block too large to decode: the connection gets GOAWAY, others are untouched', async () => {
    const big = connect(`http://127.0.0.1:${gateway.port}`, { maxSendHeaderBlockLength: 1 << 22 });
    big.on('error', () => {});
    const outcome = await raw(
      big,
      { ...GRPC_HEADERS, ':path': `/${ECHO_SERVICE}/Unary`, 'x-big': 'a'.repeat(300_000) },
      frame({}),
    );
    assert.equal(outcome.status, undefined, 'no response');
    assert.match(outcome.error ?? '', /Session closed with error code 9/, 'COMPRESSION_ERROR');
    big.destroy();
    await stillServing();
  });

  test('a client that resets mid-stream: the instance sees the cancellation, counted CANCELLED', async () => {
    const path = `/${ECHO_SERVICE}/ClientStream`;
    const cancelled = () =>
      counterValue(gatewayMetrics.requests, {
        service: ECHO_SERVICE,
        method: 'ClientStream',
        code: 'CANCELLED',
      });
    const before = await cancelled();
    const seenBefore = new Set(echo.calls);
    const stream = session.request({ ...GRPC_HEADERS, ':path': path });
    stream.on('error', () => {});
    stream.write(frame({ payload: Buffer.from('part 1') }));
    const seen = await until('the instance has the call', () =>
      echo.calls.find((c) => !seenBefore.has(c)),
    );
    stream.close(0x8); // RST_STREAM CANCEL
    await until('the instance saw the cancellation', () => seen.cancelled);
    await until('counted as CANCELLED', async () => (await cancelled()) === before + 1);
    await stillServing();
  });

  test('a client that never reads: backpressure holds the instance back, others are served', async () => {
    const slow = connect(`http://127.0.0.1:${gateway.port}`, {
      settings: { initialWindowSize: 65_535 },
    });
    const seenBefore = new Set(echo.calls);
    const stream = slow.request({ ...GRPC_HEADERS, ':path': `/${ECHO_SERVICE}/ServerStream` });
    stream.on('error', () => {});
    stream.pause(); // and never read
    // 4000 responses of 16 KiB: 64 MiB that must not pile up in the gateway.
    stream.end(frame({ responseCount: 4000, responseSize: 16_384 }));
    const seen = await until('the instance has the call', () =>
      echo.calls.find((c) => !seenBefore.has(c)),
    );
    // The instance stops being able to write once every window and buffer is full.
    let last = -1;
    let steady = 0;
    await until(
      'the instance is held back',
      () => {
        steady = seen.sent === last ? steady + 1 : 0;
        last = seen.sent;
        return steady >= 10;
      },
      15_000,
      50,
    );
    assert.ok(seen.sent < 400, `the instance wrote ${seen.sent} of 4000 responses, then waited`);
    await stillServing();
    slow.destroy();
    await until('the instance saw the call end', () => seen.cancelled);
    await stillServing();
  });
});
