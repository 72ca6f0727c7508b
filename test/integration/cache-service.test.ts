import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { busMetrics, CacheBucket, Keys, kvStream } from '../../bus/index.js';
import {
  type CacheClient,
  type CacheClientOptions,
  CacheError,
  createCacheClient,
} from '../../services/cache/client.js';
import { cacheMetrics } from '../../services/cache/metrics.js';
import { makePki, type Pki, type Replica, startReplica, tokensFor } from '../support/cache.js';
import { captureLogs } from '../support/logs.js';
import { counterValue } from '../support/metrics.js';
import { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const NAMESPACES = ['billing', 'orders', 'tiny', 'ring', 'brief', 'pages', 'parity', 'bad'];
const MAX_VALUE = 4096;
const bytes = (text: string) => new Uint8Array(Buffer.from(text));
const text = (value: Uint8Array | undefined) => (value ? Buffer.from(value).toString() : undefined);

async function refused(promise: Promise<unknown>, code: string, message: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof CacheError, `expected a CacheError, got ${String(error)}`);
    assert.equal(
      error.code,
      (CODES as Record<string, number>)[code],
      `${code} expected: ${error.message}`,
    );
    assert.match(error.message, message);
    return true;
  });
}
const CODES = {
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNAUTHENTICATED: 16,
};

describe('cache service: two replicas on a 3-node cluster', () => {
  let cluster: NatsCluster;
  let a: Replica;
  let b: Replica;
  let pki: Pki;
  const logs = captureLogs('warn');
  const clients: CacheClient[] = [];

  const client = (replica: Replica, options: Omit<CacheClientOptions, 'address'> = {}) => {
    const c = createCacheClient({
      address: replica.address,
      tls: { caFile: pki.caFile },
      ...options,
    });
    clients.push(c);
    return c;
  };
  const as = (replica: Replica, namespace: string, extra: Partial<CacheClientOptions> = {}) =>
    client(replica, { token: `token-${namespace}`, ...extra });

  /** Last sequence of the bucket's stream: unchanged means nothing was written. */
  let lastSeq: () => Promise<number>;

  before(async () => {
    pki = makePki();
    cluster = await NatsCluster.start();
    const config = {
      tls: {
        certFile: pki.serverCert,
        keyFile: pki.serverKey,
        clientCaFile: pki.caFile,
      },
      tokens: tokensFor(NAMESPACES),
      limits: { maxKeyBytes: 1024, maxValueBytes: MAX_VALUE },
      namespaces: {
        tiny: { maxRecords: 3, eviction: 'reject' as const },
        ring: { maxRecords: 3, eviction: 'remove-oldest' as const },
        brief: { ttlSeconds: 1 },
      },
      trim: { intervalMs: 200 },
    };
    a = await startReplica(cluster.servers, 'cache-a', config, logs.logger);
    b = await startReplica(cluster.servers, 'cache-b', config, logs.logger);
    const stream = kvStream(CacheBucket.name);
    lastSeq = async () => (await a.bus.streams()).find((s) => s.name === stream)?.lastSeq ?? 0;
  });
  after(async () => {
    for (const c of clients) c.close();
    await a?.close();
    await b?.close();
    await cluster?.close();
  });

  test('ready: gRPC health SERVING and /readyz 200 once the view is loaded', async () => {
    const Health = grpc.makeGenericClientConstructor(healthService, 'Health');
    const health = new Health(
      b.address,
      grpc.credentials.createSsl(readFileSync(pki.caFile)),
    ) as unknown as {
      check(req: object, cb: (e: Error | null, r: { status: string | number }) => void): void;
      close(): void;
    };
    const answer = await new Promise<{ status: string | number }>((resolve, reject) =>
      health.check({ service: 'halyard.cache.v1.Cache' }, (e, r) => (e ? reject(e) : resolve(r))),
    );
    health.close();
    assert.ok(answer.status === 'SERVING' || answer.status === 1, String(answer.status));
    const code = await new Promise<number | undefined>((resolve, reject) =>
      httpGet(`http://127.0.0.1:${a.server.adminPort}/readyz`, (res) => {
        res.resume();
        resolve(res.statusCode);
      }).on('error', reject),
    );
    assert.equal(code, 200);
  });

  test('a write on one replica is visible on the other, and watched there', async () => {
    const onA = as(a, 'billing');
    const onB = as(b, 'billing');
    const seen: string[] = [];
    const stop = onB.watch((change) => seen.push(`${change.kind}:${change.item.key}`));
    await until('watch open', async () => {
      await onA.put('warm-up', bytes('x'));
      return seen.includes('put:warm-up');
    });

    const written = await onA.put('session/42 ✓', bytes('alice'));
    assert.equal(written.namespace, 'billing');
    const read = await until('value on B', () => onB.get('session/42 ✓'));
    assert.equal(text(read.value), 'alice');
    assert.equal(read.createdAtMs, written.createdAtMs);
    await refused(onB.create('session/42 ✓', bytes('bob')), 'ALREADY_EXISTS', /already exists/);
    assert.deepEqual((await onB.list()).keys, ['session/42 ✓', 'warm-up']);

    await onA.delete('session/42 ✓');
    await until('delete on B', async () => (await onB.get('session/42 ✓')) === undefined);
    await until('watch saw the delete', () => seen.includes('deleted:session/42 ✓'));
    assert.ok(seen.includes('put:session/42 ✓'));
    // Created again after a delete (Create of an absent key succeeds).
    assert.equal(text((await onB.create('session/42 ✓', bytes('carol'))).value), 'carol');
    stop();
  });

  test('namespaces are isolated for tokens and client certificates', async () => {
    const billing = as(a, 'billing');
    const orders = as(b, 'orders');
    await billing.put('shared-name', bytes('billing data'));
    await orders.put('shared-name', bytes('orders data'));
    await until('both on A', async () => text((await as(a, 'orders').get('shared-name'))?.value));

    assert.equal(text((await as(b, 'billing').get('shared-name'))?.value), 'billing data');
    assert.equal(text((await orders.get('shared-name'))?.value), 'orders data');
    assert.deepEqual((await orders.list()).keys, ['shared-name']);
    assert.equal(await orders.deleteAll(), 1);
    assert.equal(text((await as(b, 'billing').get('shared-name'))?.value), 'billing data');

    // mTLS: the verified subject CN is the namespace.
    const billingCert = client(b, { tls: { caFile: pki.caFile, ...pki.client('billing') } });
    assert.equal(text((await billingCert.get('shared-name'))?.value), 'billing data');
    const ordersCert = client(a, { tls: { caFile: pki.caFile, ...pki.client('orders') } });
    assert.equal(await ordersCert.get('shared-name'), undefined);
    await ordersCert.put('from-cert', bytes('o'));
    await until('cert write visible to the orders token on B', async () =>
      text((await as(b, 'orders').get('from-cert'))?.value),
    );
    assert.equal(await as(a, 'billing').get('from-cert'), undefined);

    // Asking for another namespace, by header or with a certificate and a token that disagree.
    const before = await counterValue(cacheMetrics.rejected, { reason: 'permission_denied' });
    const seq = await lastSeq();
    await refused(
      as(a, 'orders', { namespace: 'billing' }).put('shared-name', bytes('stolen')),
      'PERMISSION_DENIED',
      /namespace is orders .* may not act on namespace billing/,
    );
    await refused(
      client(a, { tls: { caFile: pki.caFile, ...pki.client('orders') }, namespace: 'billing' }).get(
        'shared-name',
      ),
      'PERMISSION_DENIED',
      /client certificate subject CN.*billing/,
    );
    await refused(
      client(a, {
        tls: { caFile: pki.caFile, ...pki.client('orders') },
        token: 'token-billing',
      }).get('shared-name'),
      'PERMISSION_DENIED',
      /different identities/,
    );
    assert.equal(await lastSeq(), seq, 'nothing written');
    assert.equal(
      await counterValue(cacheMetrics.rejected, { reason: 'permission_denied' }),
      before + 3,
    );
    assert.equal(text((await as(a, 'billing').get('shared-name'))?.value), 'billing data');
  });

  test('bad input: each refusal has its status and message, is counted, writes nothing', async () => {
    const seq = await lastSeq();
    const billing = as(a, 'billing');
    const cases: Array<[string, () => Promise<unknown>, string, RegExp, string]> = [
      [
        'no identity',
        () => client(a).get('k'),
        'UNAUTHENTICATED',
        /no identity/,
        'unauthenticated',
      ],
      [
        'unknown token',
        () => client(a, { token: 'guessed' }).put('k', bytes('v')),
        'UNAUTHENTICATED',
        /unknown service token/,
        'unauthenticated',
      ],
      [
        'certificate from another CA',
        () =>
          client(a, {
            tls: { caFile: pki.caFile, ...pki.client('billing', { stranger: true }) },
          }).put('k', bytes('v')),
        'UNAUTHENTICATED',
        /no identity/,
        'unauthenticated',
      ],
      [
        'invalid namespace in a certificate',
        () =>
          client(a, { tls: { caFile: pki.caFile, ...pki.client('no such ns') } }).put(
            'k',
            bytes('v'),
          ),
        'INVALID_ARGUMENT',
        /namespace "no such ns" \(client certificate subject CN\) is invalid/,
        'invalid_namespace',
      ],
      [
        'invalid namespace header',
        () => as(a, 'billing', { namespace: 'bill ing' }).put('k', bytes('v')),
        'INVALID_ARGUMENT',
        /namespace "bill ing" \(x-halyard-namespace\) is invalid/,
        'invalid_namespace',
      ],
      [
        'empty key',
        () => billing.put('', bytes('v')),
        'INVALID_ARGUMENT',
        /key is empty/,
        'invalid_key',
      ],
      [
        'oversized key',
        () => billing.put('✓'.repeat(342), bytes('v')),
        'INVALID_ARGUMENT',
        /key is 1026 bytes \(UTF-8\); the limit is 1024/,
        'invalid_key',
      ],
      [
        'empty value',
        () => billing.create('k', new Uint8Array()),
        'INVALID_ARGUMENT',
        /value is empty/,
        'invalid_value',
      ],
      [
        'oversized value',
        () => billing.put('k', new Uint8Array(MAX_VALUE + 1)),
        'INVALID_ARGUMENT',
        /value is 4097 bytes; the limit is 4096/,
        'invalid_value',
      ],
      [
        'forged page token',
        () => billing.list({ pageToken: 'eyJhZnRlciI6MX0' }),
        'INVALID_ARGUMENT',
        /page token/,
        'invalid_page_token',
      ],
    ];
    cases.push([
      'watch without identity',
      () =>
        new Promise((_, reject) => {
          const stop = client(a).watch(() => {}, reject);
          setTimeout(stop, 5000);
        }),
      'UNAUTHENTICATED',
      /no identity/,
      'unauthenticated',
    ]);
    for (const [what, call, code, message, reason] of cases) {
      const counted = await counterValue(cacheMetrics.rejected, { reason });
      await refused(call(), code, message).catch((error: Error) => {
        throw new Error(`${what}: ${error.message}`);
      });
      assert.equal(await counterValue(cacheMetrics.rejected, { reason }), counted + 1, what);
    }
    assert.equal(await lastSeq(), seq, 'nothing written');
    assert.equal(await billing.get('k'), undefined);
  });

  test('record limit with eviction reject', async () => {
    const tiny = as(a, 'tiny');
    for (const key of ['t1', 't2', 't3']) await tiny.put(key, bytes(key));
    const seq = await lastSeq();
    await refused(
      tiny.put('t4', bytes('t4')),
      'RESOURCE_EXHAUSTED',
      /namespace tiny holds its limit of 3 records/,
    );
    await refused(as(b, 'tiny').create('t4', bytes('t4')), 'RESOURCE_EXHAUSTED', /limit of 3/);
    assert.equal(await lastSeq(), seq, 'nothing written');
    // Overwriting a present key needs no room.
    await tiny.put('t2', bytes('t2 again'));
    assert.deepEqual((await as(b, 'tiny').list()).keys, ['t1', 't2', 't3']);
  });

  test('record limit with eviction remove-oldest', async () => {
    const ring = as(a, 'ring');
    for (const key of ['r1', 'r2', 'r3']) await ring.put(key, bytes(key));
    await ring.put('r1', bytes('r1 again')); // r2 is now the least recently updated
    await as(b, 'ring').put('r4', bytes('r4'));
    await until('eviction seen on both replicas', async () => {
      const onA = (await ring.list()).keys.join();
      const onB = (await as(b, 'ring').list()).keys.join();
      return onA === 'r1,r3,r4' && onB === onA;
    });
    assert.ok((await counterValue(cacheMetrics.evicted)) >= 1);
  });

  test('TTL: readers stop seeing a value when it lapses; the server removes it and every replica drops it', async () => {
    const onA = as(a, 'brief');
    const onB = as(b, 'brief');
    const seen = { a: [] as string[], b: [] as string[] };
    const stops = [
      onA.watch((change) => seen.a.push(`${change.kind}:${change.item.key}`)),
      onB.watch((change) => seen.b.push(`${change.kind}:${change.item.key}`)),
    ];
    // Written until both watches show it: then both are open and both views hold it.
    const written = await until('both watches open', async () => {
      const entry = await onA.put('short-lived', bytes('soon gone'));
      return seen.a.includes('put:short-lived') && seen.b.includes('put:short-lived')
        ? entry
        : undefined;
    });
    assert.ok(written.expiresAtMs > Date.now() && written.expiresAtMs <= Date.now() + 1000);
    assert.equal(text((await onB.get('short-lived'))?.value), 'soon gone');
    // Every entry either replica's view holds, lapsed or not, until the server's removal.
    const held = async () =>
      (await busMetrics.viewEntries.get()).values.find((v) => v.labels.bucket === CacheBucket.name)
        ?.value ?? 0;
    const heldWithIt = await held();

    await until('lapsed on both replicas', async () =>
      (await onA.get('short-lived')) === undefined && (await onB.get('short-lived')) === undefined
        ? true
        : undefined,
    );
    assert.deepEqual((await onA.list()).keys, []);
    assert.deepEqual((await onB.list()).keys, []);

    const store = await a.bus.store(CacheBucket);
    await until(
      "removed from the bucket by the server, and from both replicas' views",
      async () =>
        (await store.get(Keys.cache('brief', 'short-lived'))) === undefined &&
        (await held()) === heldWithIt - 2,
      written.expiresAtMs + 1000 - Date.now(),
    );
    for (const stop of stops) stop();
    for (const [replica, changes] of Object.entries(seen)) {
      assert.deepEqual(
        changes.filter((c) => c === 'deleted:short-lived'),
        ['deleted:short-lived'],
        `${replica}'s Watch stream reports the removal once`,
      );
    }
  });

  test('List pages through a namespace in key order', async () => {
    const pages = as(b, 'pages');
    const keys = Array.from({ length: 25 }, (_, i) => `key-${String(i).padStart(2, '0')}`);
    for (const key of [...keys].reverse()) await pages.put(key, bytes(key));
    const seen: string[] = [];
    let token = '';
    let calls = 0;
    do {
      const page = await as(a, 'pages').list({ pageSize: 10, pageToken: token });
      seen.push(...page.keys);
      token = page.nextPageToken;
      calls++;
    } while (token);
    assert.deepEqual(seen, keys);
    assert.equal(calls, 3);
    assert.equal(await pages.deleteAll(), 25);
    assert.deepEqual((await as(a, 'pages').list()).keys, []);
  });

  test('the in-memory fallback answers the basic calls like the service', async () => {
    const scenario = async (c: CacheClient) => {
      const out: unknown[] = [];
      const attempt = async (call: () => Promise<unknown>) => {
        try {
          const result = await call();
          if (result && typeof result === 'object' && 'value' in result) {
            const { key, value, namespace } = result as {
              key: string;
              value: Uint8Array;
              namespace: string;
            };
            return { namespace, key, value: text(value) };
          }
          return result;
        } catch (error) {
          return error instanceof CacheError ? `error ${error.code}` : String(error);
        }
      };
      out.push(await attempt(() => c.get('p1')));
      out.push(await attempt(() => c.create('p1', bytes('one'))));
      out.push(await attempt(() => c.create('p1', bytes('uno'))));
      out.push(await attempt(() => c.put('p2', bytes('two'))));
      out.push(await attempt(() => c.put('p1', bytes('one!'))));
      out.push(await attempt(() => c.get('p1')));
      out.push(await attempt(() => c.list({ pageSize: 1 }).then((p) => p.keys)));
      out.push(await attempt(() => c.put('', bytes('x'))));
      out.push(await attempt(() => c.put('p3', new Uint8Array())));
      out.push(await attempt(() => c.delete('p2')));
      out.push(await attempt(() => c.delete('never-there')));
      out.push(await attempt(() => c.list().then((p) => p)));
      out.push(await attempt(() => c.deleteAll()));
      out.push(await attempt(() => c.get('p1')));
      return out;
    };
    const memory = createCacheClient({
      namespace: 'parity',
      limits: { maxKeyBytes: 1024, maxValueBytes: MAX_VALUE },
    });
    const fromMemory = await scenario(memory);
    const fromService = await scenario(as(a, 'parity'));
    assert.deepEqual(fromMemory, fromService);
    assert.deepEqual(fromMemory[2], 'error 6');
  });
});
