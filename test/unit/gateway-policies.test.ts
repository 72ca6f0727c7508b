import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { halyard } from '../../proto/gen/halyard.js';
import { RoundRobin } from '../../services/gateway/balancer.js';
import { Ejector } from '../../services/gateway/ejection.js';
import { Endpoint } from '../../services/gateway/endpoint.js';
import { encodeMessage, parseTimeout } from '../../services/gateway/grpc-status.js';
import { RetryBudget } from '../../services/gateway/retry-budget.js';
import type { Upstream } from '../../services/gateway/upstream.js';
import { instance } from '../support/samples.js';
import { until } from '../support/wait.js';

const { InstanceStatus } = halyard.discovery.v1;
const endpoint = (id: string, status: number = InstanceStatus.UP) =>
  new Endpoint(instance({ instanceId: id, status }), {} as Upstream);

test('round robin takes available endpoints in turn and skips the tried ones', () => {
  const [a, b, c, d] = [
    endpoint('a'),
    endpoint('b', InstanceStatus.DRAINING),
    endpoint('c'),
    endpoint('d'),
  ];
  const all = [a!, b!, c!, d!];
  const rr = new RoundRobin();
  assert.deepEqual(
    Array.from({ length: 6 }, () => rr.pick(all, undefined)?.id),
    ['a', 'c', 'd', 'a', 'c', 'd'],
  );
  assert.equal(rr.pick(all, [a!]), c);
  assert.equal(rr.pick(all, [a!, c!, d!]), undefined);
});

test('the retry budget allows a share of the calls in flight, never fewer than the minimum', () => {
  let active = 10;
  const budget = new RetryBudget(0.2, 3, () => active);
  assert.deepEqual(
    [budget.tryAcquire(), budget.tryAcquire(), budget.tryAcquire()],
    [true, true, true],
  );
  assert.equal(budget.tryAcquire(), false, 'min 3 applies with 10 active');
  active = 100;
  for (let i = 0; i < 17; i++) assert.ok(budget.tryAcquire());
  assert.equal(budget.tryAcquire(), false, '20 of 100');
  budget.release();
  assert.ok(budget.tryAcquire());
});

test('ejection after consecutive failures, doubling while it keeps failing, reset by a success', async () => {
  const events: Array<[number, string, number]> = [];
  const ejector = new Ejector(
    { consecutiveFailures: 2, baseMs: 20, maxMs: 50 },
    (kind, e, seconds) => events.push([kind, e.id, seconds]),
    pino({ level: 'silent' }),
  );
  const e = endpoint('x');
  ejector.failure(e, 'refused');
  assert.equal(e.available, true, 'one failure is not enough');
  ejector.success(e);
  ejector.failure(e, 'refused');
  assert.equal(e.available, true, 'a success resets the streak');
  ejector.failure(e, 'refused');
  assert.equal(e.available, false);
  assert.equal(ejector.ejected, 1);
  const { Kind } = halyard.gateway.v1.GatewayEvent;
  await until('returned after the ejection period', () => e.available, 1000, 5);

  assert.deepEqual(
    events.map(([kind]) => kind),
    [Kind.INSTANCE_EJECTED, Kind.INSTANCE_RETURNED],
  );
  ejector.failure(e, 'refused');
  ejector.failure(e, 'refused');
  assert.equal(e.ejectionLevel, 2, 'the second ejection lasts twice as long (40 ms)');
  ejector.forget(e);
  assert.equal(ejector.ejected, 0);
});

test('grpc-timeout parsing and grpc-message percent-encoding', () => {
  assert.equal(parseTimeout('100m'), 100);
  assert.equal(parseTimeout('2S'), 2000);
  assert.equal(parseTimeout('1H'), 3_600_000);
  assert.equal(parseTimeout('5000u'), 5);
  assert.equal(parseTimeout('123456789m'), undefined, 'at most 8 digits');
  assert.equal(parseTimeout('10x'), undefined);
  assert.equal(encodeMessage('plain text'), 'plain text');
  assert.equal(encodeMessage('50% ✓'), '50%25 %E2%9C%93');
});
