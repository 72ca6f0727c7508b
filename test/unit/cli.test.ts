/**
 * The CLI's small parsers, its --json output and the local mesh's config: durations,
 * ages, where the bus is found, enum names in JSON, and the instance counts `up` waits for.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import type { LauncherStatus } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { eventJson } from '../../services/cli/commands/events.js';
import { statusJson } from '../../services/cli/commands/status.js';
import { resolveServers } from '../../services/cli/connect.js';
import { formatAge } from '../../services/cli/format.js';
import { launcherJson } from '../../services/cli/launchers.js';
import { expectedInstances } from '../../services/cli/mesh.js';
import { busOptions, parseDuration, serversGiven } from '../../services/cli/options.js';
import { forHost, loadLauncherConfig } from '../../services/launcher/config.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MESH = path.join(ROOT, 'deploy/local/mesh.yaml');

test('durations: --since values', () => {
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('10m'), 600_000);
  assert.equal(parseDuration('2h'), 7_200_000);
  assert.equal(parseDuration('1d'), 86_400_000);
  assert.equal(parseDuration('10'), undefined);
  assert.equal(parseDuration('ten minutes'), undefined);
});

test('ages are short and readable', () => {
  assert.equal(formatAge(1234), '1.2s');
  assert.equal(formatAge(42_000), '42s');
  assert.equal(formatAge(184_000), '3m04s');
  assert.equal(formatAge(7_500_000), '2h05m');
  assert.equal(formatAge(-5), '0.0s');
});

/** The servers a command with the bus options is given by `argv` and `env`. */
function serversOf(argv: string[], env: string | undefined) {
  const saved = process.env.HALYARD_NATS;
  try {
    if (env === undefined) delete process.env.HALYARD_NATS;
    else process.env.HALYARD_NATS = env;
    const cmd = busOptions(new Command('status')).exitOverride();
    cmd.parse(argv, { from: 'user' });
    return resolveServers(serversGiven(cmd));
  } finally {
    if (saved === undefined) delete process.env.HALYARD_NATS;
    else process.env.HALYARD_NATS = saved;
  }
}

test('servers: --servers, then HALYARD_NATS, then the default', () => {
  assert.deepEqual(serversOf(['--servers', 'nats://x:1'], 'nats://a:4222'), {
    servers: ['nats://x:1'],
    from: '--servers',
  });
  assert.deepEqual(serversOf([], 'nats://a:4222, nats://b:4222'), {
    servers: ['nats://a:4222', 'nats://b:4222'],
    from: 'HALYARD_NATS',
  });
  const fallback = serversOf([], undefined);
  assert.ok(
    fallback.from === 'the default' || fallback.from.endsWith('up.lock'),
    `servers from ${fallback.from}`,
  );
});

test('deploy/local/mesh.yaml is a valid launcher config; up waits for its 8 processes', async () => {
  const config = await loadLauncherConfig(MESH);
  const order = [...forHost(config, 'local').keys()];
  assert.ok(order.indexOf('discovery') < order.indexOf('gateway'));
  assert.ok(order.indexOf('discovery') < order.indexOf('greeter'));
  const counts = await expectedInstances(MESH);
  assert.deepEqual(Object.fromEntries(counts), { discovery: 2, gateway: 2, cache: 1, greeter: 3 });
  for (const [name, c] of Object.entries(config.components)) {
    assert.equal(c.instances, counts.get(name), name);
    assert.ok(c.readiness, `${name} has a readiness probe`);
  }
});

const { LifecycleEvent, ProcessStatus } = halyard.launcher.v1;
const { InstanceStatus } = halyard.discovery.v1;

const launcher: LauncherStatus = {
  hostId: 'h1',
  launcherId: 'l1',
  startedAtMs: 1000,
  components: ['gateway'],
  version: '1',
  processes: [
    {
      component: 'gateway',
      instance: 1,
      state: ProcessStatus.State.READY,
      pid: 42,
      port: 7000,
      startedAtMs: 1000,
      restarts: 0,
      lastExit: '',
    },
  ],
};

/** The state of the first process in a launcher's JSON. */
const firstState = (json: Record<string, unknown> | undefined) =>
  (json?.processes as { state: unknown }[] | undefined)?.[0]?.state;

test('--json: enum values by name in launcher, status and event output', () => {
  assert.equal(firstState(launcherJson(launcher)), 'READY');

  const report = statusJson({
    now: 5000,
    instances: [
      {
        serviceId: 'greeter',
        instanceId: 'greeter-1',
        address: '127.0.0.1:7001',
        grpcServices: ['demo.greeter.v1.Greeter'],
        status: InstanceStatus.DRAINING,
        metadata: {},
        leaseSeconds: 10,
        registeredAtMs: 1000,
        renewedAtMs: 4000,
        launcherId: '',
        hostId: 'h1',
        version: '1',
      },
    ],
    hosts: [launcher],
    server: { name: 'n0', version: '2.15.2', cluster: undefined, maxPayload: undefined },
    streams: [],
  });
  assert.equal(report.services[0]?.status, 'DRAINING');
  assert.equal(report.services[0]?.leaseAgeMs, 1000);
  assert.equal(report.gateways[0]?.state, 'READY');
  assert.equal(firstState(report.launchers[0]), 'READY');

  const event = eventJson(
    {
      source: 'lifecycle',
      event: {
        eventId: 'e1',
        occurredAtMs: 1000,
        kind: LifecycleEvent.Kind.GAVE_UP,
        hostId: 'h1',
        launcherId: 'l1',
        component: 'greeter',
        instance: 2,
        pid: 0,
        port: 0,
        exitCode: 1,
        signal: '',
        uptimeMs: 0,
        attempt: 7,
        delayMs: 0,
        reason: 'too many restarts',
        processStart: 0,
      },
    },
    { seq: 9, subject: 'halyard.events.lifecycle.h1.greeter.gave_up' },
  );
  assert.deepEqual(
    { seq: event.seq, source: event.source, kind: event.kind, attempt: event.attempt },
    { seq: 9, source: 'lifecycle', kind: 'GAVE_UP', attempt: 7 },
  );
});
