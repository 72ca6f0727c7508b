/**
 * The cache's rules, shared by the service and the client's in-memory fallback so
 * that both answer the same input with the same status: key and value limits,
 * namespace names, record limits with their eviction strategy, page tokens.
 */
import { status } from '@grpc/grpc-js';
import { id as namespaceName } from '../../bus/index.js';

/** A refusal with its gRPC status; the message says what was wrong and what the limit is. */
export class CacheError extends Error {
  override readonly name = 'CacheError';
  constructor(
    readonly code: status,
    message: string,
    /** Why, for the rejection counter (`invalid_key`, `record_limit`, …). */
    readonly reason: string = 'other',
  ) {
    super(message);
  }
}

export type Eviction = 'reject' | 'remove-oldest';

export interface NamespacePolicy {
  /** Live records a namespace may hold. */
  readonly maxRecords: number;
  /** What a write of a new key into a full namespace does. */
  readonly eviction: Eviction;
  /** Seconds a value lives after its last write; 0: forever. */
  readonly ttlSeconds: number;
}

export interface Limits {
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
}

export const DEFAULT_LIMITS: Limits = { maxKeyBytes: 1024, maxValueBytes: 1024 * 1024 };
export const DEFAULT_POLICY: NamespacePolicy = {
  maxRecords: 100_000,
  eviction: 'reject',
  ttlSeconds: 0,
};

const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;

export function checkNamespace(namespace: string, origin: string): string {
  if (!namespaceName.safeParse(namespace).success) {
    throw new CacheError(
      status.INVALID_ARGUMENT,
      `namespace "${namespace.slice(0, 80)}" (${origin}) is invalid: it must be 1–64 characters of A–Z a–z 0–9 _ -`,
      'invalid_namespace',
    );
  }
  return namespace;
}

export function checkKey(key: string, limits: Limits): string {
  if (key.length === 0) {
    throw new CacheError(status.INVALID_ARGUMENT, 'key is empty', 'invalid_key');
  }
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > limits.maxKeyBytes) {
    throw new CacheError(
      status.INVALID_ARGUMENT,
      `key is ${bytes} bytes (UTF-8); the limit is ${limits.maxKeyBytes}`,
      'invalid_key',
    );
  }
  // A lone surrogate cannot be encoded as UTF-8 and would come back as U+FFFD.
  if (/\p{Cs}/u.test(key)) {
    throw new CacheError(status.INVALID_ARGUMENT, 'key is not valid UTF-8', 'invalid_key');
  }
  return key;
}

export function checkValue(value: Uint8Array | undefined, limits: Limits): Uint8Array {
  if (!value || value.byteLength === 0) {
    throw new CacheError(status.INVALID_ARGUMENT, 'value is empty', 'invalid_value');
  }
  if (value.byteLength > limits.maxValueBytes) {
    throw new CacheError(
      status.INVALID_ARGUMENT,
      `value is ${value.byteLength} bytes; the limit is ${limits.maxValueBytes}`,
      'invalid_value',
    );
  }
  return value;
}

export function recordLimitError(namespace: string, policy: NamespacePolicy): CacheError {
  return new CacheError(
    status.RESOURCE_EXHAUSTED,
    `namespace ${namespace} holds its limit of ${policy.maxRecords} records (eviction: reject); delete keys or raise the limit`,
    'record_limit',
  );
}

export function notFound(namespace: string, key: string): CacheError {
  return new CacheError(
    status.NOT_FOUND,
    `key ${JSON.stringify(key.slice(0, 200))} not found in namespace ${namespace}`,
    'not_found',
  );
}

export function alreadyExists(namespace: string, key: string): CacheError {
  return new CacheError(
    status.ALREADY_EXISTS,
    `key ${JSON.stringify(key.slice(0, 200))} already exists in namespace ${namespace}`,
    'already_exists',
  );
}

export function pageSizeOf(requested: number | undefined): number {
  if (!requested) return DEFAULT_PAGE_SIZE;
  return Math.min(requested, MAX_PAGE_SIZE);
}

/** Opaque to callers: the last key of the previous page, so paging survives concurrent writes. */
export function encodePageToken(afterKey: string): string {
  return Buffer.from(JSON.stringify({ v: 1, after: afterKey }), 'utf8').toString('base64url');
}

export function decodePageToken(token: string | undefined): string | undefined {
  if (!token) return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown;
    if (
      typeof parsed === 'object' &&
      parsed !== null &&
      (parsed as { v?: unknown }).v === 1 &&
      typeof (parsed as { after?: unknown }).after === 'string'
    ) {
      return (parsed as { after: string }).after;
    }
  } catch {
    // falls through to the error below
  }
  throw new CacheError(
    status.INVALID_ARGUMENT,
    'page token is not one this service issued; start again with an empty token',
    'invalid_page_token',
  );
}

/** Position of `key` in a sorted array (or where it would go). */
export function lowerBound(sorted: readonly string[], key: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** One page of `sorted` after `after`, skipping keys `live` rejects. */
export function page(
  sorted: readonly string[],
  after: string | undefined,
  size: number,
  live: (key: string) => boolean,
): { keys: string[]; nextPageToken: string } {
  let i = after === undefined ? 0 : lowerBound(sorted, after);
  if (after !== undefined && sorted[i] === after) i++;
  const keys: string[] = [];
  for (; i < sorted.length && keys.length < size; i++) {
    const key = sorted[i]!;
    if (live(key)) keys.push(key);
  }
  const more = i < sorted.length;
  return { keys, nextPageToken: more && keys.length > 0 ? encodePageToken(keys.at(-1)!) : '' };
}
