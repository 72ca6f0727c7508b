import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadCacheConfig } from '../../services/cache/config.js';
import { tokenDigest } from '../../services/cache/identity.js';
import {
  CacheError,
  checkKey,
  decodePageToken,
  encodePageToken,
  page,
} from '../../services/cache/rules.js';
import { ConfigError } from '../../services/common/config.js';

async function file(text: string): Promise<string> {
  const path = join(await mkdtemp(join(tmpdir(), 'halyard-cache-config-')), 'cache.yaml');
  await writeFile(path, text);
  return path;
}

test('config: defaults, token digests and per-namespace policies', async () => {
  const digest = tokenDigest('s3cret');
  const config = await loadCacheConfig(
    await file(
      `bus: { servers: nats://10.0.0.1:4222 }\ntokens:\n  - { sha256: "${digest}", namespace: billing }\nnamespaces:\n  sessions: { maxRecords: 10, eviction: remove-oldest }\n`,
    ),
  );
  assert.equal(config.limits.maxValueBytes, 1024 * 1024);
  assert.deepEqual(config.namespaces.sessions, {
    maxRecords: 10,
    eviction: 'remove-oldest',
    ttlSeconds: 0,
  });
  assert.deepEqual(config.tokens, [{ sha256: digest, namespace: 'billing' }]);
});

test('config: a plain token, a bad namespace or mTLS without a CA are named precisely', async () => {
  const path = await file(
    'tokens:\n  - { sha256: "s3cret", namespace: "bill ing" }\ntls: { certFile: a, keyFile: b, requireClientCert: true }\n',
  );
  await assert.rejects(loadCacheConfig(path), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /tokens\.0\.sha256: must be the SHA-256 of the token/);
    assert.match(error.message, /tokens\.0\.namespace: must be 1–64 characters/);
    assert.match(error.message, /tls: requireClientCert needs clientCaFile/);
    return true;
  });
});

test('keys are measured in UTF-8 bytes; lone surrogates are refused', () => {
  const limits = { maxKeyBytes: 6, maxValueBytes: 10 };
  assert.equal(checkKey('✓✓', limits), '✓✓');
  assert.throws(() => checkKey('✓✓✓', limits), /9 bytes \(UTF-8\); the limit is 6/);
  assert.throws(() => checkKey('\ud800', limits), CacheError);
});

test('pages resume after the last key, whatever was added or removed meanwhile', () => {
  const sorted = ['a', 'b', 'c', 'd', 'e'];
  const first = page(sorted, undefined, 2, () => true);
  assert.deepEqual(first.keys, ['a', 'b']);
  const after = decodePageToken(first.nextPageToken);
  assert.equal(after, 'b');
  // 'b' deleted and 'bb' added between the calls.
  assert.deepEqual(page(['a', 'bb', 'c', 'd', 'e'], after, 2, () => true).keys, ['bb', 'c']);
  assert.deepEqual(
    page(sorted, 'd', 2, () => true),
    { keys: ['e'], nextPageToken: '' },
  );
  assert.equal(decodePageToken(encodePageToken('✓ key')), '✓ key');
  assert.throws(() => decodePageToken('not-a-token'), /page token/);
});
