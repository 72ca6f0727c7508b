import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Bus, BusConfigError } from '../../bus/index.js';
import { captureLogs } from '../support/logs.js';
import { NatsCluster } from '../support/nats-cluster.js';

/** Components only check the bus; provisioning is the admin's step, which they name. */
test('an unprovisioned bus is refused with the command that provisions it', async () => {
  const cluster = await NatsCluster.start({ nodes: 1, provision: false });
  const logs = captureLogs('warn');
  const bus = await Bus.connect({ servers: cluster.servers, name: 'check', logger: logs.logger });
  try {
    await assert.rejects(
      bus.checkProvisioned(),
      (error: Error) =>
        error instanceof BusConfigError &&
        /no stream HALYARD_EVENTS/.test(error.message) &&
        error.message.includes('halyard bus provision'),
    );
    assert.deepEqual(await bus.streams(), [], 'the check created nothing');
    await bus.provision();
    await bus.checkProvisioned();
  } finally {
    await bus.close();
    await cluster.close();
  }
});
