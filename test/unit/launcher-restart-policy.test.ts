import assert from 'node:assert/strict';
import { test } from 'node:test';
import { afterExit } from '../../services/launcher/restart-policy.js';

const policy = { intervalsMs: [1000, 1000, 5000], minUptimeMs: 90_000 };

test('the n-th consecutive failure waits the n-th interval, then the launcher gives up', () => {
  let failures = 0;
  const decisions = [];
  for (let i = 0; i < 4; i++) {
    const next = afterExit(policy, failures, 10);
    failures = next.failures;
    decisions.push(next.decision);
  }
  assert.deepEqual(decisions, [
    { action: 'restart', attempt: 1, delayMs: 1000 },
    { action: 'restart', attempt: 2, delayMs: 1000 },
    { action: 'restart', attempt: 3, delayMs: 5000 },
    { action: 'give-up', attempt: 4 },
  ]);
});

test('a child that stayed up for the minimum uptime starts again from the first interval', () => {
  assert.deepEqual(afterExit(policy, 2, 90_000), {
    failures: 1,
    decision: { action: 'restart', attempt: 1, delayMs: 1000 },
  });
  assert.deepEqual(afterExit(policy, 2, 89_999).decision, {
    action: 'restart',
    attempt: 3,
    delayMs: 5000,
  });
});
