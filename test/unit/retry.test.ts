import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JetStreamApiError } from '@nats-io/jetstream';
import { errors } from '@nats-io/transport-node';
import { isTransient, retryTransient } from '../../bus/retry.js';

test('transient failures are retried until the call goes through', async () => {
  let calls = 0;
  const retries: number[] = [];
  const result = await retryTransient(
    async () => {
      calls++;
      if (calls < 4) throw new errors.NoRespondersError('$JS.API.STREAM.MSG');
      return 'stored';
    },
    { minDelayMs: 1, maxDelayMs: 4, onRetry: (_e, attempt) => retries.push(attempt) },
  );
  assert.equal(result, 'stored');
  assert.deepEqual(retries, [1, 2, 3]);
});

test('a permanent failure is not retried', async () => {
  let calls = 0;
  await assert.rejects(
    retryTransient(async () => {
      calls++;
      throw new errors.ClosedConnectionError();
    }),
    errors.ClosedConnectionError,
  );
  assert.equal(calls, 1);
  assert.equal(isTransient(new Error('boom')), false);
  assert.equal(isTransient(new errors.TimeoutError()), true);
});

test('a stream that cannot be placed while a node is offline is retried; other placement errors are not', () => {
  const placement = (description: string) =>
    new JetStreamApiError({ code: 500, err_code: 10005, description });
  assert.equal(isTransient(placement('no suitable peers for placement, peer offline')), true);
  assert.equal(isTransient(placement('no suitable peers for placement, tags not matched')), false);
});

test('aborting stops a retry loop', async () => {
  const controller = new AbortController();
  const pending = retryTransient(
    async () => {
      throw new errors.TimeoutError();
    },
    { signal: controller.signal, minDelayMs: 10_000 },
  );
  controller.abort(new Error('shutting down'));
  await assert.rejects(pending, /shutting down/);
});

test('a permissions refusal is never retried, however the client wraps it', async () => {
  const denied = errors.PermissionViolationError.parse(
    'Permissions Violation for Publish to "$KV.halyard-registry.a.b"',
  );
  assert.ok(denied);
  const wrapped = new errors.RequestError(denied.message, { cause: denied });
  assert.equal(isTransient(denied), false);
  assert.equal(isTransient(wrapped), false);
  let calls = 0;
  await assert.rejects(
    retryTransient(async () => {
      calls++;
      throw wrapped;
    }),
    /Permissions Violation/,
  );
  assert.equal(calls, 1);
});
