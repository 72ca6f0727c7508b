/** What one client may hold at a gateway: streams per connection, connections, idle time. */
import assert from 'node:assert/strict';
import { type ClientHttp2Session, connect } from 'node:http2';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Bus } from '../../bus/index.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { gatewayMetrics } from '../../services/gateway/metrics.js';
import { startBusCluster } from '../support/bus-cluster.js';
import {
  ECHO_SERVICE,
  type EchoServer,
  echoClient,
  startEchoServer,
} from '../support/echo-service.js';
import { register, routed, startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import { counterValue } from '../support/metrics.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

/** An HTTP/2 connection to a gateway, and how it ended. */
function open(port: number) {
  const session = connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  const connected = new Promise<boolean>((resolve) => {
    session.once('remoteSettings', () => resolve(true));
    session.once('close', () => resolve(false));
  });
  return { session, connected };
}

describe('gateway limits', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let echo: EchoServer;
  const gateways: Gateway[] = [];
  const sessions: ClientHttp2Session[] = [];
  const logs = captureLogs('info');

  before(async () => {
    ({ cluster, bus } = await startBusCluster('limits-test', logs.logger));
    echo = await startEchoServer({ instanceId: 'echo-1' });
    await register(bus, { instanceId: 'echo-1', address: echo.address });
  });
  after(async () => {
    for (const session of sessions) session.destroy();
    for (const gateway of gateways) await gateway.stop();
    await echo?.stop();
    await bus?.close();
    await cluster?.close();
  });

  test('streams per connection are advertised; connections beyond the cap are closed at accept', async () => {
    const gateway = await startGateway(bus, cluster.servers, logs.logger, {
      id: 'gw-capped',
      limits: { maxConnections: 2, maxConcurrentStreams: 5 },
    });
    gateways.push(gateway);
    const dropped = () => counterValue(gatewayMetrics.rejected, { reason: 'connection-limit' });
    const droppedBefore = await dropped();
    const first = open(gateway.port);
    const second = open(gateway.port);
    sessions.push(first.session, second.session);
    assert.equal(await first.connected, true);
    assert.equal(await second.connected, true);
    assert.equal(first.session.remoteSettings.maxConcurrentStreams, 5);
    const third = open(gateway.port);
    sessions.push(third.session);
    assert.equal(await third.connected, false, 'the third connection is refused');
    assert.equal(await dropped(), droppedBefore + 1);
    first.session.close();
    await until('a slot is free', async () => {
      const again = open(gateway.port);
      sessions.push(again.session);
      return await again.connected;
    });
  });

  test('a connection without a call is closed after the idle timeout, one with a quiet call open is not', async () => {
    const gateway = await startGateway(bus, cluster.servers, logs.logger, {
      id: 'gw-idle',
      limits: { idleConnectionSeconds: 0.5 },
    });
    gateways.push(gateway);
    await routed(gateway, ECHO_SERVICE, 'echo-1');
    const closed = () => counterValue(gatewayMetrics.idleConnectionsClosed);
    const closedBefore = await closed();

    const idle = open(gateway.port);
    sessions.push(idle.session);
    assert.equal(await idle.connected, true);
    const goaway = await new Promise<number>((resolve) =>
      idle.session.once('goaway', (code: number) => resolve(code)),
    );
    assert.equal(goaway, 0, 'a graceful GOAWAY (NO_ERROR)');
    assert.equal(await closed(), closedBefore + 1);

    // A call that sends nothing for three idle periods keeps its connection open.
    const client = echoClient(`127.0.0.1:${gateway.port}`);
    const reply = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.unary({ payload: Buffer.from('quiet'), delayMs: 1500 }, new grpc.Metadata(), {}, (e) =>
        resolve(e),
      ),
    );
    assert.equal(reply, null);
    assert.equal(await closed(), closedBefore + 1, 'not closed while the call was open');
    await until('closed once the call is over', async () => (await closed()) === closedBefore + 2);
    client.close();
  });
});
