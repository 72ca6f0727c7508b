import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MIN_SERVER_VERSION } from '../../bus/bus.js';
import { Bus, BusConfigError, LogIds } from '../../bus/index.js';
import { FakeNatsServer } from '../support/fake-nats-server.js';
import { captureLogs } from '../support/logs.js';

test('a component refuses a nats-server older than the minimum, names both versions and hangs up', async (t) => {
  const server = await FakeNatsServer.start({ version: '2.9.10' });
  t.after(() => server.close());
  const logs = captureLogs();

  const connecting = Bus.connect({ servers: server.url, name: 'old-server', logger: logs.logger });

  await assert.rejects(connecting, (error: unknown) => {
    assert.ok(error instanceof BusConfigError, `not a BusConfigError: ${String(error)}`);
    assert.match(error.message, /nats-server 2\.9\.10 at .* is older than 2\.12\.0/);
    return true;
  });
  assert.equal(MIN_SERVER_VERSION, '2.12.0');
  await server.firstConnectionEnded();
  assert.equal(server.connections.length, 1, 'the client reconnected after refusing the server');
  assert.deepEqual(server.published, [], 'the client used a server it refused');
  const [line] = logs.withId(LogIds.serverTooOld);
  assert.equal(line?.version, '2.9.10');
  assert.equal(line?.minimum, '2.12.0');
});

test('a nats-server of the minimum version is accepted and asked about JetStream', async (t) => {
  const server = await FakeNatsServer.start({ version: MIN_SERVER_VERSION });
  t.after(() => server.close());
  const logs = captureLogs();

  const bus = await Bus.connect({ servers: server.url, name: 'new-server', logger: logs.logger });
  try {
    assert.equal(bus.server.version, MIN_SERVER_VERSION);
    assert.deepEqual(server.published, ['$JS.API.INFO']);
    assert.deepEqual(logs.withId(LogIds.serverTooOld), []);
  } finally {
    await bus.close();
  }
});
