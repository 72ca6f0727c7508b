import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Bus } from '../../bus/index.js';
import { failoverChannel } from '../../services/common/failover-channel.js';
import { freePort } from '../../services/launcher/instance.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { type ComponentProcess, spawnComponent } from '../support/component-process.js';
import {
  type EchoClient,
  type EchoServer,
  echoDefinition,
  startEchoServer,
} from '../support/echo-service.js';
import { register } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const CALLS = 1500;
const IN_FLIGHT = 16;
const KILL_AFTER = 300;

interface GatewayProcess extends ComponentProcess {
  readonly address: string;
  /** Calls this gateway answered, from its metrics. */
  requests(): Promise<number>;
}

async function spawnGateway(id: string, servers: string[]): Promise<GatewayProcess> {
  const [port, admin] = [await freePort(), await freePort()];
  const gateway = await spawnComponent(
    'services/gateway/main.ts',
    [
      ...['--id', id, '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${admin}`],
      ...['--nats', servers.join(','), '--expose-internal', 'halyard.testing.'],
    ],
    admin,
  );
  const requests = async () =>
    (await gateway.metrics())
      .split('\n')
      .filter((line) => line.startsWith('halyard_gateway_requests_total{'))
      .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
  return { ...gateway, address: `127.0.0.1:${port}`, requests };
}

function unary(client: EchoClient): Promise<grpc.ServiceError | undefined> {
  return new Promise((resolve) => {
    client.unary(
      { payload: Buffer.from('x'), delayMs: 5 },
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (error) => resolve(error ?? undefined),
    );
  });
}

describe('a client over two gateways, one killed under load', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  const backends: EchoServer[] = [];
  const gateways: GatewayProcess[] = [];
  const logs = captureLogs('warn');

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-client-failover', logs.logger));
    for (let i = 1; i <= 3; i++) {
      const backend = await startEchoServer({ instanceId: `echo-${i}` });
      backends.push(backend);
      await register(bus, { instanceId: backend.instanceId, address: backend.address });
    }
    for (const id of ['gw-a', 'gw-b']) gateways.push(await spawnGateway(id, cluster.servers));
  });
  after(async () => {
    for (const g of gateways) g.child.kill('SIGKILL');
    for (const b of backends) await b.stop();
    await bus?.close();
    await cluster?.close();
  });

  test('no call fails that started after the gateway died, and calls reach both gateways', async () => {
    const { target, options } = failoverChannel({ addresses: gateways.map((g) => g.address) });
    const Client = grpc.makeGenericClientConstructor(echoDefinition, 'Echo');
    const client = new Client(
      target,
      grpc.credentials.createInsecure(),
      options,
    ) as unknown as EchoClient;
    await until('echo routed through both gateways', async () => !(await unary(client)));

    const [victim, survivor] = gateways;
    const survivorBefore = await survivor!.requests();
    let started = 0;
    let diedAt = Number.POSITIVE_INFINITY;
    let inFlightAtDeath = 0;
    let inFlight = 0;
    const failures: Array<{ startedAt: number; error: grpc.ServiceError }> = [];
    void victim!.exited.then(() => {
      diedAt = Date.now();
      inFlightAtDeath = inFlight;
    });
    const deadline = Date.now() + 60_000;
    const worker = async () => {
      while (started < CALLS && Date.now() < deadline) {
        if (++started === KILL_AFTER) victim!.child.kill('SIGKILL');
        const startedAt = Date.now();
        inFlight++;
        const error = await unary(client);
        inFlight--;
        if (error) failures.push({ startedAt, error });
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    client.close();

    assert.ok(Number.isFinite(diedAt), 'the gateway died');
    assert.equal(started, CALLS, 'every call was made within the time bound');
    const afterDeath = failures.filter((f) => f.startedAt > diedAt);
    assert.deepEqual(
      afterDeath.map((f) => `${grpc.status[f.error.code]}: ${f.error.details}`),
      [],
      'calls started after the gateway died all succeeded',
    );
    assert.ok(
      failures.length <= inFlightAtDeath,
      `${failures.length} failures, ${inFlightAtDeath} calls were in flight when the gateway died`,
    );
    const survivorServed = (await survivor!.requests()) - survivorBefore;
    assert.ok(
      // Round robin gives it about half of the calls before the kill.
      survivorServed <= CALLS - KILL_AFTER / 4,
      `the killed gateway took its share before it died (survivor answered ${survivorServed})`,
    );
    const served = backends.reduce((sum, b) => sum + b.calls.length, 0);
    assert.ok(served >= CALLS - failures.length, 'every successful call reached a backend');
  });
});
