import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Codecs, InvalidMessageError } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import * as samples from '../support/samples.js';

const cases = [
  ['serviceInstance', samples.instance()],
  ['affinityPreference', samples.preference()],
  ['cacheEntry', samples.cacheEntry()],
  ['lifecycleEvent', samples.lifecycleEvent()],
  ['gatewayEvent', samples.gatewayEvent()],
  ['discoveryEvent', samples.discoveryEvent()],
] as const;

describe('codecs', () => {
  for (const [name, value] of cases) {
    test(`${name} round-trips every field`, () => {
      const codec = Codecs[name] as {
        encode(v: unknown): Uint8Array;
        decode(b: Uint8Array, o: { subject: string }, t?: string): unknown;
        typeName: string;
      };
      const decoded = codec.decode(codec.encode(value), { subject: 'test' }, codec.typeName);
      // Every field is non-default in the samples, so a schema field missing from
      // the .proto (or the other way round) shows up as a difference here.
      assert.deepEqual({ ...(decoded as object) }, { ...value });
    });
  }

  test('encode rejects an invalid value and names the field', () => {
    assert.throws(
      () => Codecs.serviceInstance.encode(samples.instance({ address: 'no-port' })),
      (error: unknown) =>
        error instanceof InvalidMessageError &&
        error.typeName === 'halyard.discovery.v1.ServiceInstance' &&
        /address: must be host:port/.test(error.message),
    );
    assert.throws(
      () => Codecs.serviceInstance.encode(samples.instance({ status: 0 })),
      /status: must be set \(not UNSPECIFIED\)/,
    );
    assert.throws(
      () => Codecs.serviceInstance.encode(samples.instance({ serviceId: 'has.dot' })),
      /serviceId: must be 1–64 characters/,
    );
  });

  test('decode rejects garbage bytes with subject and sequence', () => {
    const origin = { subject: 'halyard.events.gateway.gw-1.x', seq: 17 };
    assert.throws(
      () => Codecs.gatewayEvent.decode(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]), origin),
      (error: unknown) =>
        error instanceof InvalidMessageError &&
        error.origin?.seq === 17 &&
        /on halyard\.events\.gateway\.gw-1\.x \(seq 17\): not protobuf/.test(error.message),
    );
  });

  test('decode rejects a wrong type header', () => {
    const bytes = Codecs.gatewayEvent.encode(samples.gatewayEvent());
    assert.throws(
      () =>
        Codecs.gatewayEvent.decode(bytes, { subject: 's' }, 'halyard.launcher.v1.LifecycleEvent'),
      /type header is "halyard\.launcher\.v1\.LifecycleEvent"/,
    );
  });

  test('decode rejects valid protobuf that fails validation', () => {
    const bytes = halyard.discovery.v1.ServiceInstance.encode({
      serviceId: 'orders',
      leaseSeconds: 15,
    }).finish();
    assert.throws(
      () => Codecs.serviceInstance.decode(bytes, { subject: 'orders.x', seq: 3 }),
      /instanceId: .*address: must be host:port/,
    );
  });

  test('unknown enum numbers from a newer writer are rejected, not trusted', () => {
    const bytes = halyard.discovery.v1.ServiceInstance.encode({
      ...samples.instance(),
      status: 99 as halyard.discovery.v1.InstanceStatus,
    }).finish();
    assert.throws(() => Codecs.serviceInstance.decode(bytes, { subject: 'k' }), /status/);
  });
});
