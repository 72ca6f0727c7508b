import assert from 'node:assert/strict';
import { test } from 'node:test';
import { failoverChannel } from '../../services/common/failover-channel.js';

const config = (options: Parameters<typeof failoverChannel>[0]) =>
  JSON.parse(String(failoverChannel(options).options['grpc.service_config']));

test('several addresses become one static round-robin target', () => {
  const channel = failoverChannel({ addresses: ['10.0.0.1:8443', '10.0.0.2:8443'] });
  assert.equal(channel.target, 'ipv4:10.0.0.1:8443,10.0.0.2:8443');
  assert.deepEqual(config({ addresses: ['10.0.0.1:1'] }).loadBalancingConfig, [
    { round_robin: {} },
  ]);
  assert.equal(
    failoverChannel({ addresses: ['[::1]:1', '[fd00::2]:2'] }).target,
    'ipv6:[::1]:1,[fd00::2]:2',
  );
});

test('one DNS name is left to the resolver', () => {
  assert.equal(
    failoverChannel({ addresses: ['dns:///gw.example:8443'] }).target,
    'dns:///gw.example:8443',
  );
  assert.equal(failoverChannel({ addresses: ['gw.example:8443'] }).target, 'gw.example:8443');
});

test('only methods declared idempotent are retried, and only on UNAVAILABLE', () => {
  assert.deepEqual(config({ addresses: ['10.0.0.1:1'] }).methodConfig, []);
  const [method] = config({
    addresses: ['10.0.0.1:1'],
    idempotent: ['demo.v1.Greeter/SayHello', 'demo.v1.Reader'],
  }).methodConfig;
  assert.deepEqual(method.name, [
    { service: 'demo.v1.Greeter', method: 'SayHello' },
    { service: 'demo.v1.Reader' },
  ]);
  assert.deepEqual(method.retryPolicy.retryableStatusCodes, ['UNAVAILABLE']);
  assert.equal(method.retryPolicy.maxAttempts, 3);
});

test('bad input is refused with what was expected', () => {
  assert.throws(() => failoverChannel({ addresses: [] }), /at least one address/);
  assert.throws(
    () => failoverChannel({ addresses: ['gw-a.example:1', 'gw-b.example:1'] }),
    /"gw-a.example:1": expected ip:port/,
  );
  assert.throws(
    () => failoverChannel({ addresses: ['10.0.0.1:1', '[::1]:1'] }),
    /must all be IPv4 or all IPv6/,
  );
  assert.throws(
    () => failoverChannel({ addresses: ['10.0.0.1:1'], idempotent: ['a/b/c'] }),
    /expected pkg.Service or pkg.Service\/Method/,
  );
});
