import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StreamConfig } from '@nats-io/jetstream';
import {
  configDifferences,
  deadLetterStreamConfig,
  eventsStreamConfig,
} from '../../bus/provision.js';

test('a stream that differs from what Halyard expects is named with the field', () => {
  const expected = eventsStreamConfig({ replicas: 3 });
  const actual = { ...expected, num_replicas: 1 } as StreamConfig;
  assert.deepEqual(configDifferences('HALYARD_EVENTS', actual, expected), [
    'stream HALYARD_EVENTS: num_replicas is 1 on the server, Halyard expects 3',
  ]);
  assert.deepEqual(configDifferences('HALYARD_EVENTS', expected as StreamConfig, expected), []);
});

test('events are kept 7 days by default and deduplicated for 2 minutes', () => {
  const config = eventsStreamConfig({ replicas: 1 });
  assert.equal(config.max_age, 7 * 86_400 * 1e9);
  assert.equal(config.duplicate_window, 120 * 1e9);
  assert.deepEqual(config.subjects, ['halyard.events.>']);
});

test('a retention shorter than 2 minutes bounds the default duplicate window', () => {
  for (const config of [
    eventsStreamConfig({ replicas: 1, eventsMaxAgeMs: 2000 }),
    deadLetterStreamConfig({ replicas: 1, eventsMaxAgeMs: 2000 }),
  ]) {
    assert.equal(config.max_age, 2 * 1e9);
    assert.equal(config.duplicate_window, 2 * 1e9);
  }
});
