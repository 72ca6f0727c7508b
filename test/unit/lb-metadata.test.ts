import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseInstanceMetadata } from '../../services/common/lb-metadata.js';

test('defaults apply when no balancing metadata is given; other prefixes pass through', () => {
  const result = parseInstanceMetadata({ 'team.owner': 'billing' });
  assert.deepEqual(result, {
    ok: true,
    settings: {
      lb: {
        policy: 'round-robin',
        idleSeconds: 28_800,
        maxUsersPerInstance: undefined,
        whenFull: 'reject',
        whenDown: 'failover',
        requireUser: false,
        idempotentMethods: [],
      },
      health: { grpcService: undefined },
    },
  });
});

test('every setting is parsed into its type', () => {
  const result = parseInstanceMetadata({
    'lb.policy': 'user',
    'lb.idleSeconds': '600',
    'lb.maxUsersPerInstance': '40',
    'lb.whenFull': 'overflow',
    'lb.whenDown': 'strict',
    'lb.requireUser': 'true',
    'lb.idempotentMethods': 'acme.orders.v1.Orders/Get',
    'health.grpc': 'acme.orders.v1.Orders',
  });
  assert.ok(result.ok);
  assert.deepEqual(result.settings.lb, {
    policy: 'user',
    idleSeconds: 600,
    maxUsersPerInstance: 40,
    whenFull: 'overflow',
    whenDown: 'strict',
    requireUser: true,
    idempotentMethods: ['acme.orders.v1.Orders/Get'],
  });
  assert.equal(result.settings.health.grpcService, 'acme.orders.v1.Orders');
  const whole = parseInstanceMetadata({ 'health.grpc': '' });
  assert.ok(whole.ok);
  assert.equal(whole.settings.health.grpcService, '', 'empty: the server as a whole');
});

test('every problem names its key', () => {
  const cases: Array<[Record<string, string>, string]> = [
    [{ 'lb.policy': 'random' }, 'metadata["lb.policy"]: '],
    [{ 'lb.idleSeconds': '0' }, 'metadata["lb.idleSeconds"]: '],
    [{ 'lb.idleSeconds': '-5' }, 'metadata["lb.idleSeconds"]: must be a whole number'],
    [{ 'lb.maxUsersPerInstance': 'lots' }, 'metadata["lb.maxUsersPerInstance"]: '],
    [{ 'lb.whenFull': 'queue' }, 'metadata["lb.whenFull"]: '],
    [{ 'lb.whenDown': 'retry' }, 'metadata["lb.whenDown"]: '],
    [{ 'lb.requireUser': 'yes' }, 'metadata["lb.requireUser"]: '],
    [{ 'lb.colour': 'blue' }, 'metadata["lb.colour"]: unknown setting'],
    [{ 'health.http': '/healthz' }, 'metadata["health.http"]: unknown setting'],
    [{ 'health.grpc': 'not a name' }, 'metadata["health.grpc"]: '],
  ];
  for (const [metadata, prefix] of cases) {
    const result = parseInstanceMetadata(metadata);
    assert.equal(result.ok, false, JSON.stringify(metadata));
    if (!result.ok)
      assert.ok(result.problems[0]?.startsWith(prefix), `${result.problems[0]} vs ${prefix}`);
  }
});
