import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventSubject } from '../../bus/events.js';
import { Buckets, Keys, Subjects } from '../../bus/index.js';
import { eventSourceOf } from '../../bus/names.js';
import * as samples from '../support/samples.js';

test('registry and affinity keys are <service>.<instance|userKey>', () => {
  assert.equal(Keys.registry('orders', 'orders-1'), 'orders.orders-1');
  const key = samples.userKey('alice');
  assert.equal(Keys.affinity('orders', key), `orders.${key}`);
});

test('ids outside the token alphabet are refused before they reach a subject', () => {
  assert.throws(() => Keys.registry('orders', 'a.b'), /instance id "a\.b" must be 1–64 characters/);
  assert.throws(() => Subjects.lifecycle('host a', 'gw', 'started'), /host id/);
  assert.throws(
    () => Keys.affinity('orders', 'alice@example.com'),
    /user key must be a base64url digest/,
  );
});

test('cache keys: any UTF-8 key survives the bucket key alphabet', () => {
  const key = 'session/42 ✓ .*>';
  const bucketKey = Keys.cache('billing', key);
  assert.match(bucketKey, /^billing\.[A-Za-z0-9_-]+$/);
  assert.equal(Keys.cacheKeyOf(bucketKey), key);
});

test('event subjects name source, origin and kind', () => {
  assert.equal(
    eventSubject({ source: 'lifecycle', event: samples.lifecycleEvent() }),
    'halyard.events.lifecycle.host-a.gateway.exited',
  );
  assert.equal(
    eventSubject({ source: 'gateway', event: samples.gatewayEvent() }),
    'halyard.events.gateway.gw-1.affinity_moved',
  );
  assert.equal(
    eventSubject({ source: 'discovery', event: samples.discoveryEvent() }),
    'halyard.events.discovery.disc-1.lease_expired',
  );
  assert.equal(Subjects.control('launcher', '*', 'display'), 'halyard.ctl.launcher.all.display');
});

test('a subject is parsed back into the key or the event source it was formed from', () => {
  const key = Keys.registry('orders', 'orders-1');
  assert.equal(Keys.bucketKeyOf(Buckets.registry, Subjects.kv(Buckets.registry, key)), key);
  assert.equal(
    eventSourceOf(eventSubject({ source: 'gateway', event: samples.gatewayEvent() })),
    'gateway',
  );
  assert.equal(eventSourceOf('halyard.events.unknown.x.y'), undefined);
  assert.equal(eventSourceOf('halyard.ctl.launcher.all.display'), undefined);
});
