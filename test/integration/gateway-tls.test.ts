import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { Bus } from '../../bus/index.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { gatewayMetrics } from '../../services/gateway/metrics.js';
import { startBusCluster } from '../support/bus-cluster.js';
import {
  ECHO_SERVICE,
  type EchoServer,
  echoDefinition,
  startEchoServer,
} from '../support/echo-service.js';
import { register, routed, startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import { counterValue } from '../support/metrics.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

describe('client-facing TLS with ALPN h2', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let gateway: Gateway;
  let echo: EchoServer;
  const dir = mkdtempSync(join(tmpdir(), 'halyard-tls-'));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const logs = captureLogs('info');

  before(async () => {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        keyFile,
        '-out',
        certFile,
      ],
      { stdio: 'ignore' },
    );
    ({ cluster, bus } = await startBusCluster('tls-test', logs.logger));
    // The instance speaks TLS too: the gateway's internal TLS, with a client certificate.
    echo = await startEchoServer({
      instanceId: 'echo-1',
      credentials: grpc.ServerCredentials.createSsl(
        readFileSync(certFile),
        [{ cert_chain: readFileSync(certFile), private_key: readFileSync(keyFile) }],
        true,
      ),
    });
    await register(bus, { instanceId: 'echo-1', address: echo.address });
    gateway = await startGateway(bus, cluster.servers, logs.logger, {
      tls: { certFile, keyFile },
      upstream: { tls: { caFile: certFile, certFile, keyFile } },
    });
    await routed(gateway, ECHO_SERVICE, 'echo-1');
  });
  after(async () => {
    await gateway?.stop();
    await echo?.stop();
    await bus?.close();
    await cluster?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a gRPC client over TLS reaches an instance over mutual TLS', async () => {
    const Client = grpc.makeGenericClientConstructor(echoDefinition, 'Echo');
    const client = new Client(
      `127.0.0.1:${gateway.port}`,
      grpc.credentials.createSsl(readFileSync(certFile)),
    ) as unknown as {
      unary: (
        r: object,
        m: grpc.Metadata,
        o: object,
        cb: (e: unknown, r: { instanceId: string }) => void,
      ) => void;
      close(): void;
    };
    const reply = await new Promise<{ instanceId: string }>((resolve, reject) =>
      client.unary({ payload: Buffer.from('tls') }, new grpc.Metadata(), {}, (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    );
    client.close();
    assert.equal(reply.instanceId, 'echo-1');
  });

  function http1OverTls(alpn?: string[]): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const socket = tlsConnect(
        {
          host: '127.0.0.1',
          port: gateway.port,
          ca: readFileSync(certFile),
          ...(alpn ? { ALPNProtocols: alpn } : {}),
        },
        () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      );
      let text = '';
      socket.on('data', (c) => {
        text += c;
      });
      socket.on('error', reject);
      socket.on('close', () => resolve(text));
    });
  }

  test('an HTTP/1.1 client over TLS without ALPN gets a 505, counted', async () => {
    const before = await counterValue(gatewayMetrics.rejected, { reason: 'http1' });
    assert.match(await http1OverTls(), /^HTTP\/1\.1 505 HTTP Version Not Supported\r\n/);
    assert.equal(await counterValue(gatewayMetrics.rejected, { reason: 'http1' }), before + 1);
  });

  test('a TLS client offering only http/1.1 gets the no_application_protocol alert, counted', async () => {
    const before = await counterValue(gatewayMetrics.rejected, { reason: 'tls' });
    await assert.rejects(http1OverTls(['http/1.1']), {
      code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL',
    });
    await until(
      'counted',
      async () => (await counterValue(gatewayMetrics.rejected, { reason: 'tls' })) === before + 1,
    );
  });
});
