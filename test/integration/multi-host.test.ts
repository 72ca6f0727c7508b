/**
 * Three hosts for real (as network namespaces), deployed from deploy/: the locked bus
 * one node per host, a launcher per host running deploy/multi-host/mesh.yaml, published
 * on the bus as the mesh configuration (`bus` mode, as in production); a client
 * over both gateways; `halyard status` on host 1 sees the whole fleet; then kill -9 of a
 * whole host under load, with the chaos suite's goals asserted.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type GreeterClient, greeterClient, sayHello } from '../chaos/load.js';
import { killHostScenario } from '../chaos/scenarios.js';
import { MultiHost, PLACEMENT } from '../support/multi-host.js';

describe('a 3-host deployment', { timeout: 300_000 }, () => {
  let deployment: MultiHost;
  const clients: GreeterClient[] = [];

  before(async () => {
    deployment = await MultiHost.start();
  });
  after(async () => {
    for (const c of clients) c.close();
    await deployment?.close();
  });

  test('a client with both gateway addresses reaches greeters on every host through each', async () => {
    const both = greeterClient(deployment.gatewayAddresses);
    clients.push(both);
    const answered = new Set<string>();
    for (let i = 0; i < 30; i++) answered.add((await sayHello(both, undefined)).instanceId);
    assert.deepEqual(
      [...answered].sort(),
      PLACEMENT.greeter!.map((i) => `greeter-host-${i}-1`),
    );
    for (const address of deployment.gatewayAddresses) {
      const one = greeterClient([address]);
      clients.push(one);
      assert.match((await sayHello(one, undefined)).instanceId, /^greeter-host-\d-1$/);
    }
  });

  test('halyard status on host 1 lists every host’s launcher, gateways and instances', async () => {
    const { code, stdout, stderr } = await deployment.halyard(1, 'operator', ['status', '--json']);
    assert.equal(code, 0, stderr);
    const report = JSON.parse(stdout) as {
      services: { serviceId: string; instanceId: string; hostId?: string }[];
      launchers: { hostId: string; processes: { component: string; state: string }[] }[];
      gateways: { host: string; state: string }[];
      config?: { latest: number; hosts: { hostId: string; applied: number; lagging: boolean }[] };
    };
    assert.deepEqual(
      report.launchers.map((l) => l.hostId),
      ['host-1', 'host-2', 'host-3'],
    );
    assert.deepEqual(
      report.gateways.map((g) => g.host),
      ['host-1', 'host-2'],
    );
    // Every launcher runs the mesh configuration published on the bus, version 1.
    assert.equal(report.config?.latest, 1, stdout);
    assert.deepEqual(
      report.config.hosts.map((h) => [h.hostId, h.applied, h.lagging]),
      [
        ['host-1', 1, false],
        ['host-2', 1, false],
        ['host-3', 1, false],
      ],
    );
    const ids = report.services.map((s) => s.instanceId);
    for (const i of [1, 2, 3]) {
      assert.ok(ids.includes(`greeter-host-${i}-1`), `greeter of host-${i} in ${ids}: ${stdout}`);
      assert.ok(ids.includes(`discovery-host-${i}-1`), `discovery of host-${i} in ${ids}`);
    }
  });

  test('kill -9 of a whole host under load: no call fails but those in flight, no write lost, the host rejoins', async (t) => {
    const row = await killHostScenario(deployment, 3, { downSeconds: 5 });
    t.diagnostic(JSON.stringify(row));
    assert.equal(
      row.failed - row.failedInFlight,
      0,
      `calls failed beyond those in flight: ${JSON.stringify(row)}`,
    );
    assert.equal(row.writesLost, 0);
    assert.equal(row.stickyMovedWithoutNeed, 0);
    assert.ok(row.recoverySeconds !== undefined, 'the host rejoined');
  });
});
