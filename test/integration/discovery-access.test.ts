/**
 * Who may call the Registry: callers are identified (service token or client
 * certificate) and their grants decide which service ids they act for, which gRPC
 * names those may claim and whether they may read; registered addresses stay within
 * the allowed networks. Every refusal is a gRPC status naming what and why, counted by
 * reason, and writes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status as grpcStatus } from '@grpc/grpc-js';
import { Bus, Keys, RegistryBucket } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { tokenDigest } from '../../services/common/callers.js';
import type { AccessOptions } from '../../services/discovery/access.js';
import { LogIds } from '../../services/discovery/log-ids.js';
import { discoveryMetrics } from '../../services/discovery/metrics.js';
import type { DiscoveryReplica } from '../../services/discovery/replica.js';
import { makePki, type Pki } from '../support/cache.js';
import {
  rejection,
  startReplica,
  type TestCredential,
  TestRegistryClient,
} from '../support/discovery.js';
import { type CapturedLogs, captureLogs } from '../support/logs.js';
import { counterValue } from '../support/metrics.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const { InstanceStatus } = halyard.discovery.v1;
const WatchKind = halyard.discovery.v1.WatchResponse.Kind;

const TOKENS = { alpha: 'alpha-secret-token', beta: 'beta-secret-token', reader: 'reader-token' };

const ACCESS: AccessOptions = {
  tokens: Object.entries(TOKENS).map(([identity, token]) => ({
    sha256: tokenDigest(token),
    identity,
  })),
  grants: {
    // alpha may also claim beta's name, so that only ownership stands in its way.
    alpha: { services: { alpha: ['acme.alpha.v1.*', 'acme.beta.v1.Beta'] }, read: false },
    beta: { services: { beta: ['acme.beta.v1.Beta'] }, read: false },
    reader: { services: {}, read: true },
    // A client certificate's subject CN.
    'gamma.services': { services: { gamma: ['acme.gamma.v1.Gamma'] }, read: true },
  },
};

function registration(serviceId: string, overrides: Record<string, unknown> = {}) {
  return {
    serviceId,
    instanceId: `${serviceId}-1`,
    address: '127.0.0.1:7001',
    grpcServices: [] as string[],
    status: InstanceStatus.UP,
    leaseSeconds: 30,
    ...overrides,
  };
}

describe('discovery access: authenticated, scoped registration on a 3-node cluster', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let pki: Pki;
  let logs: CapturedLogs;
  let r1: DiscoveryReplica;
  let r2: DiscoveryReplica;
  const clients: TestRegistryClient[] = [];
  const client = (replica: DiscoveryReplica, credential: TestCredential) => {
    const c = new TestRegistryClient(replica.grpcAddress, credential);
    clients.push(c);
    return c;
  };
  let alpha: TestRegistryClient;
  let beta: TestRegistryClient;
  let betaOnR2: TestRegistryClient;
  let reader: TestRegistryClient;

  const stored = async (serviceId: string, instanceId: string) =>
    (await bus.store(RegistryBucket)).get(Keys.registry(serviceId, instanceId));
  const refusals = (method: string, reason: string) =>
    counterValue(discoveryMetrics.rejected, { replica: 'r1', method, reason });

  before(async () => {
    cluster = await NatsCluster.start();
    bus = await Bus.connect({ servers: cluster.servers, name: 'test-access' });
    await bus.provision();
    pki = makePki();
    logs = captureLogs('info');
    // TLS whose client certificates are verified against the CA, tokens still accepted.
    const tls = {
      certFile: pki.serverCert,
      keyFile: pki.serverKey,
      clientCaFile: pki.caFile,
      requireClientCert: false,
    };
    [r1, r2] = await Promise.all([
      startReplica(cluster, 'r1', { access: ACCESS }, logs.logger),
      startReplica(cluster, 'r2', { access: ACCESS, tls }),
    ]);
    alpha = client(r1, { token: TOKENS.alpha });
    beta = client(r1, { token: TOKENS.beta });
    reader = client(r1, { token: TOKENS.reader });
    betaOnR2 = client(r2, { tls: { caFile: pki.caFile }, token: TOKENS.beta });
  });
  after(async () => {
    for (const c of clients) c.close();
    await r1?.stop();
    await r2?.stop();
    await bus?.close();
    await cluster?.close();
  });

  test('an anonymous Register is UNAUTHENTICATED, counted, logged without secrets, and writes nothing', async () => {
    const before = await refusals('Register', 'unauthenticated');
    const anonymous = client(r1, 'anonymous');
    const hijack = registration('aaa', {
      instanceId: 'evil',
      address: '127.0.0.1:9',
      grpcServices: ['demo.greeter.v1.Greeter'],
    });
    const { code, details } = await rejection(anonymous.register(hijack));
    assert.equal(code, grpcStatus.UNAUTHENTICATED);
    assert.match(details, /no identity/);
    const forged = client(r1, { token: 'not-a-configured-token' });
    const unknown = await rejection(forged.register(hijack));
    assert.equal(unknown.code, grpcStatus.UNAUTHENTICATED);
    assert.match(unknown.details, /unknown service token/);
    assert.equal(await stored('aaa', 'evil'), undefined, 'nothing written');
    assert.equal(await refusals('Register', 'unauthenticated'), before + 2);
    const logged = JSON.stringify(logs.withId(LogIds.rejected));
    assert.match(logged, /unauthenticated/);
    assert.ok(!logged.includes('not-a-configured-token'), 'the token is never logged');
  });

  test("a credential for service alpha cannot register, renew, deregister or set the status of beta's instances", async () => {
    await beta.register(registration('beta', { grpcServices: ['acme.beta.v1.Beta'] }));
    const entry = await stored('beta', 'beta-1');
    assert.ok(entry);
    const before = await refusals('Register', 'permission_denied');
    const attempts: Array<[string, Promise<unknown>]> = [
      ['Register', alpha.register(registration('beta', { instanceId: 'beta-2' }))],
      ['Renew', alpha.renew('beta', 'beta-1')],
      ['Deregister', alpha.deregister('beta', 'beta-1')],
      ['SetStatus', alpha.setStatus('beta', 'beta-1', InstanceStatus.OUT_OF_SERVICE)],
    ];
    for (const [method, attempt] of attempts) {
      const { code, details } = await rejection(attempt);
      assert.equal(code, grpcStatus.PERMISSION_DENIED, method);
      assert.match(details, /caller alpha \(service token\) may not act for service beta/, method);
    }
    assert.equal(await refusals('Register', 'permission_denied'), before + 1);
    assert.equal(await stored('beta', 'beta-2'), undefined, 'nothing written');
    const after = await stored('beta', 'beta-1');
    assert.equal(after?.revision, entry.revision, "beta's registration is untouched");
    assert.equal(after?.value.status, InstanceStatus.UP);
  });

  test("alpha cannot claim beta's gRPC name: FAILED_PRECONDITION naming the owner, on either replica", async () => {
    // beta-1 (registered by the previous test) owns acme.beta.v1.Beta.
    const betaOwnsIt = registration('alpha', {
      grpcServices: ['acme.alpha.v1.Alpha', 'acme.beta.v1.Beta'],
    });
    const before = await refusals('Register', 'failed_precondition');
    const { code, details } = await rejection(alpha.register(betaOwnsIt));
    assert.equal(code, grpcStatus.FAILED_PRECONDITION);
    assert.match(details, /acme\.beta\.v1\.Beta is owned by service beta/);
    assert.equal(await refusals('Register', 'failed_precondition'), before + 1);
    assert.equal(await stored('alpha', 'alpha-1'), undefined, 'nothing written');

    // A name outside alpha's grant is refused before ownership is considered.
    const ungranted = await rejection(
      alpha.register(registration('alpha', { grpcServices: ['demo.greeter.v1.Greeter'] })),
    );
    assert.equal(ungranted.code, grpcStatus.PERMISSION_DENIED);
    assert.match(ungranted.details, /may not claim gRPC service demo\.greeter\.v1\.Greeter/);

    // The other replica decides the same from its own view.
    await until('r2 sees beta-1', () => r2.registry.list('beta').length === 1);
    const alphaOnR2 = client(r2, { tls: { caFile: pki.caFile }, token: TOKENS.alpha });
    const onR2 = await rejection(alphaOnR2.register(betaOwnsIt));
    assert.equal(onR2.code, grpcStatus.FAILED_PRECONDITION);
    assert.match(onR2.details, /owned by service beta/);

    // Once beta has no instance left, the name is free again.
    await betaOnR2.deregister('beta', 'beta-1');
    await until('r1 no longer sees beta-1', () => r1.registry.list('beta').length === 0);
    await alpha.register(betaOwnsIt);
    assert.deepEqual((await stored('alpha', 'alpha-1'))?.value.grpcServices, [
      'acme.alpha.v1.Alpha',
      'acme.beta.v1.Beta',
    ]);
    await alpha.deregister('alpha', 'alpha-1');
  });

  test('a link-local, unspecified, multicast or unlisted address is INVALID_ARGUMENT naming it', async () => {
    const before = await refusals('Register', 'invalid_argument');
    const addresses = [
      '169.254.169.254:80',
      '0.0.0.0:7001',
      '224.0.0.1:7001',
      '[fe80::1]:7001',
      '[::ffff:169.254.169.254]:80',
      '8.8.8.8:53',
      'metadata.google.internal:80',
    ];
    for (const address of addresses) {
      const { code, details } = await rejection(
        alpha.register(registration('alpha', { instanceId: 'far-1', address })),
      );
      assert.equal(code, grpcStatus.INVALID_ARGUMENT, address);
      assert.ok(
        details.startsWith(`instance.address: "${address}" may not be registered`),
        details,
      );
    }
    assert.equal(await refusals('Register', 'invalid_argument'), before + addresses.length);
    assert.equal(await stored('alpha', 'far-1'), undefined, 'nothing written');
    // Loopback and private networks are allowed by default.
    for (const address of ['127.0.0.1:7002', '10.1.2.3:7002', '[::1]:7002']) {
      await alpha.register(registration('alpha', { instanceId: 'near-1', address }));
      await alpha.deregister('alpha', 'near-1');
    }
  });

  test('a reader-only identity may List and Watch but not Register; writers may not read', async () => {
    await beta.register(registration('beta', { instanceId: 'beta-9' }));
    assert.deepEqual(
      (await reader.list('beta')).map((i) => i.instanceId),
      ['beta-9'],
    );
    const stream = reader.watch('beta');
    const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
      stream.once('data', resolve);
      stream.once('error', reject);
    });
    stream.cancel();
    assert.equal(first.kind, WatchKind.UPSERTED);
    assert.equal((first.instance as { instanceId: string }).instanceId, 'beta-9');

    const { code, details } = await rejection(reader.register(registration('beta')));
    assert.equal(code, grpcStatus.PERMISSION_DENIED);
    assert.match(details, /caller reader \(service token\) may not act for service beta/);

    const denied = await rejection(beta.list());
    assert.equal(denied.code, grpcStatus.PERMISSION_DENIED);
    assert.match(denied.details, /caller beta \(service token\) has no read grant/);
    const watchDenied = await new Promise<{ code: number; details: string }>((resolve) => {
      const s = beta.watch();
      s.on('data', () => {});
      s.once('error', (e: { code: number; details: string }) => resolve(e));
    });
    assert.equal(watchDenied.code, grpcStatus.PERMISSION_DENIED);
    await beta.deregister('beta', 'beta-9');
  });

  test('a client certificate verified against the CA identifies its subject CN', async () => {
    const cert = pki.client('gamma.services');
    const gamma = client(r2, { tls: { caFile: pki.caFile, ...cert } });
    const registered = await gamma.register(
      registration('gamma', { grpcServices: ['acme.gamma.v1.Gamma'] }),
    );
    assert.equal((registered.instance as { serviceId: string }).serviceId, 'gamma');
    assert.deepEqual(
      (await gamma.list('gamma')).map((i) => i.instanceId),
      ['gamma-1'],
    );
    const scoped = await rejection(gamma.register(registration('beta', { instanceId: 'g-9' })));
    assert.equal(scoped.code, grpcStatus.PERMISSION_DENIED);
    assert.match(scoped.details, /caller gamma\.services \(client certificate subject CN\)/);
    // A certificate and a token naming different identities is refused.
    const mixed = client(r2, { tls: { caFile: pki.caFile, ...cert }, token: TOKENS.beta });
    const conflict = await rejection(mixed.list());
    assert.equal(conflict.code, grpcStatus.PERMISSION_DENIED);
    assert.match(conflict.details, /name different identities/);
    // Over TLS without a certificate or token, still nobody.
    const anonymous = client(r2, { tls: { caFile: pki.caFile } });
    assert.equal((await rejection(anonymous.list())).code, grpcStatus.UNAUTHENTICATED);
    await gamma.deregister('gamma', 'gamma-1');
  });
});
