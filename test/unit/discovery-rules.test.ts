import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { halyard } from '../../proto/gen/halyard.js';
import { ConfigError } from '../../services/common/config.js';
import { ownerOf } from '../../services/common/rendezvous.js';
import { AddressPolicy } from '../../services/discovery/addresses.js';
import { RegistryError } from '../../services/discovery/errors.js';
import { SelfPreservation } from '../../services/discovery/self-preservation.js';
import { loadStaticDefinitions } from '../../services/discovery/static-definitions.js';
import {
  DEFAULT_LEASES,
  renewIntervalSeconds,
  validateRegistration,
} from '../../services/discovery/validation.js';

const { InstanceStatus } = halyard.discovery.v1;

test('rendezvous: every replica computes the same owner, and a departure moves only its keys', () => {
  const keys = Array.from({ length: 2000 }, (_, i) => `svc.i-${i}`);
  const three = ['r1', 'r2', 'r3'];
  const owners = keys.map((k) => ownerOf(k, three));
  assert.deepEqual(
    owners,
    keys.map((k) => ownerOf(k, [...three].reverse())),
    'order does not matter',
  );
  const shares = three.map((r) => owners.filter((o) => o === r).length);
  assert.ok(
    shares.every((n) => n > 500 && n < 800),
    `balanced: ${shares}`,
  );
  const two = keys.map((k) => ownerOf(k, ['r1', 'r3']));
  keys.forEach((_, i) => {
    if (owners[i] !== 'r2') assert.equal(two[i], owners[i], 'keys of surviving replicas stay');
  });
  assert.equal(ownerOf('svc.x', []), undefined);
});

test('self-preservation holds above the share and minimum, counting removals within the window', () => {
  const policy = { threshold: 0.15, minLapsed: 3, windowMs: 10_000 };
  const sp = new SelfPreservation(policy);
  assert.equal(sp.decide(2, 3, 0), false, 'below the minimum count: evict');
  assert.equal(sp.decide(3, 100, 0), false, '3 of 103 is under 15%');
  assert.equal(sp.decide(20, 80, 0), true, '20 of 100 lapsed at once: hold');
  assert.equal(sp.holding, true);
  assert.equal(sp.decide(0, 100, 1), false, 'renewals came back');
  // Lapses spread over the window: evicted piecemeal until the window's total crosses the share.
  const spread = new SelfPreservation(policy);
  assert.equal(spread.decide(8, 92, 0), false);
  spread.recordRemoved(8, 0);
  assert.equal(spread.decide(8, 84, 1000), true, '16 of 100 within one window');
  assert.equal(spread.decide(8, 84, 20_000), false, 'the earlier removals left the window');
});

test('registration defaults: status UP, the default lease, timestamps set by discovery', () => {
  const instance = validateRegistration(
    {
      serviceId: 'orders',
      instanceId: 'o-1',
      address: '[::1]:7001',
      renewedAtMs: 5,
      registeredAtMs: 5,
    },
    DEFAULT_LEASES,
    1000,
  );
  assert.equal(instance.status, InstanceStatus.UP);
  assert.equal(instance.leaseSeconds, 15);
  assert.equal(instance.renewedAtMs, 1000);
  assert.equal(instance.registeredAtMs, 1000);
  assert.equal(renewIntervalSeconds(15), 5, 'defaults: renew every 5 s, expire after 15 s');
  assert.equal(renewIntervalSeconds(1), 1);
});

test('registration field errors are INVALID_ARGUMENT naming the field', () => {
  const base = { serviceId: 'orders', instanceId: 'o-1', address: 'h:1' };
  const cases: Array<[object, string]> = [
    [{ ...base, address: 'h:0' }, 'instance.address'],
    [{ ...base, leaseSeconds: 1 }, 'instance.lease_seconds'],
    [{ ...base, launcherId: 'a b' }, 'instance.launcher_id'],
    [{ ...base, version: 'v'.repeat(200) }, 'instance.version'],
    [{ ...base, grpcServices: ['ok.Svc', 'bad name'] }, 'instance.grpc_services[1]'],
    [{ ...base, serviceId: 'a'.repeat(65) }, 'instance.service_id'],
  ];
  for (const [raw, field] of cases) {
    assert.throws(
      () => validateRegistration(raw as never, DEFAULT_LEASES, 0),
      (e: unknown) =>
        e instanceof RegistryError && e.code === status.INVALID_ARGUMENT && e.field === field,
      field,
    );
  }
});

test('static definitions: deterministic ids; bad entries name their path', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'halyard-static-'));
  try {
    const file = join(dir, 'static.yaml');
    writeFileSync(
      file,
      'instances:\n  - service: legacy\n    address: "10.0.0.5:9000"\n  - service: legacy\n    id: fixed\n    address: "10.0.0.6:9000"\n',
    );
    const [a, b] = await loadStaticDefinitions(file, 15, new AddressPolicy());
    const [again] = await loadStaticDefinitions(file, 15, new AddressPolicy());
    assert.equal(a?.instanceId, again?.instanceId, 'same definition, same id on every replica');
    assert.match(a?.instanceId ?? '', /^static-[0-9a-f]{16}$/);
    assert.equal(b?.instanceId, 'fixed');
    writeFileSync(
      file,
      'instances:\n  - service: Legacy\n    address: nowhere\n    metadata: { lb.policy: random }\n',
    );
    await assert.rejects(loadStaticDefinitions(file, 15, new AddressPolicy()), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /instances\.0\.service: /);
      assert.match(e.message, /instances\.0\.address: /);
      assert.match(e.message, /instances\.0\.metadata: metadata\["lb\.policy"\]/);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
