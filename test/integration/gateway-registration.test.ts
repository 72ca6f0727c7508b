/**
 * A gateway configured with `discovery:` registers itself as service `halyard-gateway`
 * (its client-facing address, no gRPC names claimed) once ready, `halyard status` lists
 * it though no launcher runs it, and it leaves the registry when it stops.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Bus, ServiceInstance } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { statusJson } from '../../services/cli/commands/status.js';
import { tokenDigest } from '../../services/common/callers.js';
import type { DiscoveryReplica } from '../../services/discovery/replica.js';
import { GATEWAY_SERVICE_ID } from '../../services/gateway/config.js';
import type { Gateway } from '../../services/gateway/gateway.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { startReplica as startDiscovery, TESTER_ACCESS, tokenFile } from '../support/discovery.js';
import { startGateway } from '../support/gateway.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const { InstanceStatus } = halyard.discovery.v1;

/** Granted service id `halyard-gateway` and no gRPC name; the other token only `greeter`. */
const GATEWAY_TOKEN = 'gateway-token-for-registration-tests';
const GREETER_TOKEN = 'greeter-token-for-registration-tests';

describe('gateways in discovery', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let discovery: DiscoveryReplica;
  const gateways: Gateway[] = [];
  const logs = captureLogs('warn');

  const registered = async (instanceId: string): Promise<ServiceInstance | undefined> => {
    const { entries } = await bus.snapshot('registrations');
    return [...entries.values()].find(
      (i) => i.serviceId === GATEWAY_SERVICE_ID && i.instanceId === instanceId,
    );
  };
  const discoverySettings = (token: string) => ({
    addresses: [discovery.grpcAddress],
    tokenFile: tokenFile(token),
    leaseSeconds: 5,
    drainGraceMs: 100,
  });

  before(async () => {
    ({ cluster, bus } = await startBusCluster('gateway-registration-test', logs.logger));
    discovery = await startDiscovery(cluster, 'discovery-1', {
      access: {
        tokens: [
          ...TESTER_ACCESS.tokens,
          { sha256: tokenDigest(GATEWAY_TOKEN), identity: 'gateways' },
          { sha256: tokenDigest(GREETER_TOKEN), identity: 'greeter' },
        ],
        grants: {
          ...TESTER_ACCESS.grants,
          gateways: { services: { [GATEWAY_SERVICE_ID]: [] }, read: false },
          greeter: { services: { greeter: ['demo.greeter.v1.Greeter'] }, read: false },
        },
      },
    });
  });
  after(async () => {
    for (const gateway of gateways) await gateway.stop();
    await discovery?.stop();
    await bus?.close();
    await cluster?.close();
  });

  test('a ready gateway registers as halyard-gateway with its address, and status lists it', async () => {
    const gateway = await startGateway(bus, cluster.servers, logs.logger, {
      id: 'gw-registered',
      discovery: discoverySettings(GATEWAY_TOKEN),
    });
    gateways.push(gateway);
    const instance = await until('the gateway is registered', () => registered('gw-registered'));
    assert.equal(instance.status, InstanceStatus.UP);
    assert.equal(instance.address, `127.0.0.1:${gateway.port}`);
    assert.deepEqual(
      instance.grpcServices,
      [],
      'a gateway claims no gRPC name: nothing routes to it',
    );
    assert.deepEqual(instance.metadata, {});

    // Started by hand: no launcher reports it, the registry does.
    const { entries } = await bus.snapshot('registrations');
    const report = statusJson({
      now: Date.now(),
      instances: [...entries.values()],
      hosts: [],
      server: bus.server,
      streams: [],
    });
    assert.deepEqual(report.gateways, [
      {
        host: '-',
        name: 'gw-registered',
        state: undefined,
        registry: 'UP',
        address: instance.address,
      },
    ]);
  });

  test('a gateway whose credential is not granted halyard-gateway serves all the same and says why it is not registered', async () => {
    const gateway = await startGateway(bus, cluster.servers, logs.logger, {
      id: 'gw-refused',
      discovery: discoverySettings(GREETER_TOKEN),
    });
    gateways.push(gateway);
    const [warning] = await until('the refusal is logged', () => {
      const lines = logs.withId('HALG0090W');
      return lines.length > 0 ? lines : undefined;
    });
    assert.match(
      String((warning!.err as { message?: string }).message),
      /PERMISSION_DENIED|halyard-gateway/,
    );
    assert.equal(gateway.notReady(), undefined, 'the gateway is ready');
    assert.equal(await registered('gw-refused'), undefined);
  });

  test('a stopping gateway drains and deregisters', async () => {
    const gateway = gateways.shift()!;
    await gateway.stop();
    assert.equal(await registered('gw-registered'), undefined, 'gone once stop returns');
  });
});
