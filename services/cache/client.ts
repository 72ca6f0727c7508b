/**
 * A small client of the cache service (`halyard.cache.v1.Cache`) for extenders'
 * TypeScript services.
 *
 * `createCacheClient({ address, token | tls })` talks to a cache replica (through a
 * gateway or directly). Given several replicas' addresses it spreads calls over them
 * and rides out the loss of one (services/common/failover-channel.ts): calls that never
 * reached a dead replica go to another, and Get, Put, Delete and List — safe to run
 * twice — are retried on another replica after UNAVAILABLE. Create and DeleteAll are not
 * (a Create that ran would then report ALREADY_EXISTS); a watch ends with UNAVAILABLE
 * when its replica dies, and the caller watches again (and re-reads what it needs).
 * When no address is configured, it returns an **in-memory
 * fallback** with the same interface, limits and error codes, meant for development
 * only: its data lives in this process, is not shared with other processes or
 * replicas, and is lost when the process exits. It holds one namespace (the
 * `namespace` option, default `dev`).
 *
 * Every refusal is a CacheError carrying the gRPC status code and the service's message.
 */
import * as grpc from '@grpc/grpc-js';
import { clientCredentials } from '../common/client-tls.js';
import { failoverChannel } from '../common/failover-channel.js';
import { serviceDefinition } from '../common/grpc.js';
import {
  alreadyExists,
  CacheError,
  checkKey,
  checkNamespace,
  checkValue,
  DEFAULT_LIMITS,
  DEFAULT_POLICY,
  decodePageToken,
  type Limits,
  lowerBound,
  type NamespacePolicy,
  page,
  pageSizeOf,
  recordLimitError,
} from './rules.js';

export { CacheError };

export interface CacheItem {
  readonly namespace: string;
  readonly key: string;
  readonly value: Uint8Array;
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
  /** 0: never expires. */
  readonly expiresAtMs: number;
}

export interface CacheChangeEvent {
  readonly kind: 'put' | 'deleted';
  readonly item: CacheItem;
}

export interface CachePage {
  readonly keys: string[];
  /** Empty on the last page. */
  readonly nextPageToken: string;
}

export interface CacheClient {
  /** The item, or undefined when the key is absent (or lapsed). */
  get(key: string): Promise<CacheItem | undefined>;
  /** Throws CacheError ALREADY_EXISTS when the key holds a value. */
  create(key: string, value: Uint8Array): Promise<CacheItem>;
  put(key: string, value: Uint8Array): Promise<CacheItem>;
  /** Succeeds whether or not the key existed. */
  delete(key: string): Promise<void>;
  list(options?: { pageSize?: number; pageToken?: string }): Promise<CachePage>;
  /** Removes every key of the namespace; returns how many. */
  deleteAll(): Promise<number>;
  /** Calls `listener` for every later change of the namespace; returns the stop function. */
  watch(listener: (change: CacheChangeEvent) => void, onError?: (error: Error) => void): () => void;
  close(): void;
}

export interface CacheClientOptions {
  /** `host:port` of a cache replica or gateway, or of several replicas; absent: the in-memory fallback. */
  readonly address?: string | readonly string[];
  /** Service token, sent as `authorization: Bearer <token>`. */
  readonly token?: string;
  /** TLS to the service; `certFile`/`keyFile` make the client certificate the identity. */
  readonly tls?: { readonly caFile: string; readonly certFile?: string; readonly keyFile?: string };
  /** Sent as `x-halyard-namespace` (the service refuses a mismatch); fallback's namespace. */
  readonly namespace?: string;
  /** Per-call deadline; default 10 s. */
  readonly timeoutMs?: number;
  /** In-memory fallback only. */
  readonly limits?: Limits;
  readonly policy?: NamespacePolicy;
}

export function createCacheClient(options: CacheClientOptions = {}): CacheClient {
  if (!options.address || options.address.length === 0) {
    return new MemoryCacheClient(
      options.namespace ?? 'dev',
      options.limits ?? DEFAULT_LIMITS,
      options.policy ?? DEFAULT_POLICY,
    );
  }
  return new GrpcCacheClient(options.address, options);
}

type Callback<T> = (error: grpc.ServiceError | null, response: T) => void;
interface RawClient extends grpc.Client {
  get(
    req: object,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: Callback<{ entry: CacheItem }>,
  ): void;
  create(
    req: object,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: Callback<{ entry: CacheItem }>,
  ): void;
  put(
    req: object,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: Callback<{ entry: CacheItem }>,
  ): void;
  delete(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<object>): void;
  list(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<CachePage>): void;
  deleteAll(
    req: object,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: Callback<{ deleted: number }>,
  ): void;
  watch(
    req: object,
    md: grpc.Metadata,
  ): grpc.ClientReadableStream<{ kind: number; entry: CacheItem }>;
}

/** The cache's gRPC service (proto/halyard/cache/v1). */
export const CACHE_SERVICE = 'halyard.cache.v1.Cache';
/** Methods whose second run changes nothing the first did not. */
const IDEMPOTENT = ['Get', 'Put', 'Delete', 'List'];

const CacheGrpcClient = grpc.makeGenericClientConstructor(
  serviceDefinition(CACHE_SERVICE),
  'Cache',
);

class GrpcCacheClient implements CacheClient {
  private readonly raw: RawClient;
  private readonly metadata = new grpc.Metadata();
  private readonly timeoutMs: number;

  constructor(address: string | readonly string[], options: CacheClientOptions) {
    const tls = options.tls;
    const credentials = clientCredentials(tls);
    const channel = failoverChannel({
      addresses: typeof address === 'string' ? [address] : address,
      idempotent: IDEMPOTENT.map((method) => `${CACHE_SERVICE}/${method}`),
    });
    this.raw = new CacheGrpcClient(
      channel.target,
      credentials,
      channel.options,
    ) as unknown as RawClient;
    if (options.token) this.metadata.set('authorization', `Bearer ${options.token}`);
    if (options.namespace) this.metadata.set('x-halyard-namespace', options.namespace);
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  async get(key: string): Promise<CacheItem | undefined> {
    try {
      return (await this.call<{ entry: CacheItem }>('get', { key })).entry;
    } catch (error) {
      if (error instanceof CacheError && error.code === grpc.status.NOT_FOUND) return undefined;
      throw error;
    }
  }

  async create(key: string, value: Uint8Array): Promise<CacheItem> {
    return (await this.call<{ entry: CacheItem }>('create', { key, value })).entry;
  }

  async put(key: string, value: Uint8Array): Promise<CacheItem> {
    return (await this.call<{ entry: CacheItem }>('put', { key, value })).entry;
  }

  async delete(key: string): Promise<void> {
    await this.call('delete', { key });
  }

  async list(options: { pageSize?: number; pageToken?: string } = {}): Promise<CachePage> {
    const response = await this.call<CachePage>('list', {
      pageSize: options.pageSize ?? 0,
      pageToken: options.pageToken ?? '',
    });
    return { keys: response.keys, nextPageToken: response.nextPageToken };
  }

  async deleteAll(): Promise<number> {
    return (await this.call<{ deleted: number }>('deleteAll', {})).deleted;
  }

  watch(listener: (change: CacheChangeEvent) => void, onError?: (error: Error) => void) {
    const stream = this.raw.watch({}, this.metadata);
    stream.on('data', (message: { kind: number; entry: CacheItem }) =>
      listener({ kind: message.kind === 2 ? 'deleted' : 'put', item: message.entry }),
    );
    stream.on('error', (error: grpc.ServiceError) => {
      if (error.code !== grpc.status.CANCELLED) onError?.(asCacheError(error));
    });
    return () => stream.cancel();
  }

  close(): void {
    this.raw.close();
  }

  private call<T>(method: keyof RawClient, request: object): Promise<T> {
    return new Promise((resolve, reject) => {
      const fn = this.raw[method] as (
        req: object,
        md: grpc.Metadata,
        opts: grpc.CallOptions,
        cb: Callback<T>,
      ) => void;
      fn.call(
        this.raw,
        request,
        this.metadata,
        { deadline: Date.now() + this.timeoutMs },
        (error, response) => (error ? reject(asCacheError(error)) : resolve(response)),
      );
    });
  }
}

function asCacheError(error: grpc.ServiceError): CacheError {
  return new CacheError(error.code, error.details || error.message, 'remote');
}

/** Development stand-in: the service's rules over a Map in this process. */
export class MemoryCacheClient implements CacheClient {
  private readonly items = new Map<string, CacheItem>();
  private readonly sorted: string[] = [];
  private readonly listeners = new Set<(change: CacheChangeEvent) => void>();

  constructor(
    private readonly namespace: string,
    private readonly limits: Limits = DEFAULT_LIMITS,
    private readonly policy: NamespacePolicy = DEFAULT_POLICY,
  ) {
    checkNamespace(namespace, 'in-memory cache namespace');
  }

  async get(key: string): Promise<CacheItem | undefined> {
    checkKey(key, this.limits);
    return this.live(key);
  }

  async create(key: string, value: Uint8Array): Promise<CacheItem> {
    checkKey(key, this.limits);
    checkValue(value, this.limits);
    if (this.live(key)) throw alreadyExists(this.namespace, key);
    return this.write(key, value);
  }

  async put(key: string, value: Uint8Array): Promise<CacheItem> {
    checkKey(key, this.limits);
    checkValue(value, this.limits);
    return this.write(key, value);
  }

  async delete(key: string): Promise<void> {
    checkKey(key, this.limits);
    this.remove(key);
  }

  async list(options: { pageSize?: number; pageToken?: string } = {}): Promise<CachePage> {
    const after = decodePageToken(options.pageToken);
    return page(this.sorted, after, pageSizeOf(options.pageSize), (key) => !!this.live(key));
  }

  async deleteAll(): Promise<number> {
    const keys = [...this.items.keys()];
    for (const key of keys) this.remove(key);
    return keys.length;
  }

  watch(listener: (change: CacheChangeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.listeners.clear();
  }

  private live(key: string): CacheItem | undefined {
    const item = this.items.get(key);
    if (item && item.expiresAtMs > 0 && item.expiresAtMs <= Date.now()) {
      this.remove(key);
      return undefined;
    }
    return item;
  }

  private write(key: string, value: Uint8Array): CacheItem {
    const previous = this.live(key);
    if (!previous && this.items.size >= this.policy.maxRecords) {
      if (this.policy.eviction === 'reject') throw recordLimitError(this.namespace, this.policy);
      // Map order is write order: the first key is the least recently updated.
      const oldest = this.items.keys().next().value;
      if (oldest !== undefined) this.remove(oldest);
    }
    const now = Date.now();
    const item: CacheItem = {
      namespace: this.namespace,
      key,
      value: new Uint8Array(value),
      createdAtMs: previous?.createdAtMs ?? now,
      updatedAtMs: now,
      expiresAtMs: this.policy.ttlSeconds > 0 ? now + this.policy.ttlSeconds * 1000 : 0,
    };
    if (previous) this.items.delete(key);
    else this.sorted.splice(lowerBound(this.sorted, key), 0, key);
    this.items.set(key, item);
    for (const listener of this.listeners) listener({ kind: 'put', item });
    return item;
  }

  private remove(key: string): void {
    const item = this.items.get(key);
    if (!item) return;
    this.items.delete(key);
    this.sorted.splice(lowerBound(this.sorted, key), 1);
    for (const listener of this.listeners) listener({ kind: 'deleted', item });
  }
}
