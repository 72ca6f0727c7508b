/**
 * One replica's cache: answers from the local view of `halyard-cache`, writes to the
 * bus, and keeps per-namespace indexes (write order for eviction, sorted keys for
 * List) up to date from the view's changes, so no call scans the bucket.
 *
 * Several replicas serve the same data and converge on the bus's order: last writer
 * wins; record limits are checked against the local view, so writers racing on two
 * replicas may overshoot a limit briefly — with `remove-oldest`, every replica's
 * periodic trim removes the excess, choosing the same victims (the oldest writes in bus
 * order). Lapsed values need no such round: the server removes them (per-message TTL).
 */
import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  CacheBucket,
  type CacheEntry,
  KeyChangedError,
  KeyExistsError,
  Keys,
  type KvStore,
  type LocalView,
  type ViewChange,
} from '../../bus/index.js';
import { CacheLogIds } from './log-ids.js';
import { cacheMetrics } from './metrics.js';
import {
  alreadyExists,
  CacheError,
  checkKey,
  checkValue,
  decodePageToken,
  type Limits,
  lowerBound,
  type NamespacePolicy,
  notFound,
  page,
  pageSizeOf,
  recordLimitError,
} from './rules.js';

export type CacheChange =
  | { readonly kind: 'put'; readonly entry: CacheEntry }
  | { readonly kind: 'deleted'; readonly entry: CacheEntry; readonly reason: string };

interface NamespaceIndex {
  /** Cache key → bucket key, in the order of the last write (oldest first). */
  readonly byWrite: Map<string, string>;
  /** Cache keys, sorted by UTF-16 code units. */
  readonly sorted: string[];
}

/** How long a write waits for this replica's view to show it (read-your-writes). */
const APPLY_WAIT_MS = 1000;
/** Deletes DeleteAll keeps in flight at once. */
const DELETE_BATCH = 64;

export interface CacheStateOptions {
  readonly limits: Limits;
  readonly policyOf: (namespace: string) => NamespacePolicy;
  readonly logger: Logger;
}

export class CacheState {
  private readonly namespaces = new Map<string, NamespaceIndex>();
  private readonly watchers = new Map<string, Set<(change: CacheChange) => void>>();
  private readonly waiters = new Set<{ done: () => boolean; resolve: () => void }>();
  private waitPoll: NodeJS.Timeout | undefined;
  private trimming = false;
  /** Set when a wait for the view timed out: the view revision that ends the lag. */
  private laggingUntil = 0;

  constructor(
    private readonly view: LocalView<CacheEntry>,
    private readonly store: KvStore<CacheEntry>,
    private readonly options: CacheStateOptions,
  ) {
    // Registered before the view loads: the initial values arrive as changes too.
    view.onChange((change) => this.apply(change));
  }

  get ready(): Promise<void> {
    return this.view.ready;
  }

  get(namespace: string, key: string): CacheEntry {
    checkKey(key, this.options.limits);
    const entry = this.view.get(Keys.cache(namespace, key));
    if (!entry) throw notFound(namespace, key);
    return entry;
  }

  async create(namespace: string, key: string, value: Uint8Array): Promise<CacheEntry> {
    checkKey(key, this.options.limits);
    checkValue(value, this.options.limits);
    const bucketKey = Keys.cache(namespace, key);
    if (this.view.get(bucketKey)) throw alreadyExists(namespace, key);
    const victims = this.makeRoom(namespace, key);
    const entry = this.entryFor(namespace, key, value, undefined);
    let revision: number;
    try {
      revision = await this.store.create(entry);
    } catch (error) {
      if (!(error instanceof KeyExistsError)) throw error;
      // The bus holds a value: live (another replica's create won) or lapsed within the
      // last second (the server's TTL resolution), which a create may replace, with
      // compare-and-set so that of two such creates one wins.
      const current = await this.store.get(bucketKey);
      const lapse = current && CacheBucket.expiresAt(current.value);
      if (!current || lapse === undefined || lapse > Date.now()) {
        throw alreadyExists(namespace, key);
      }
      try {
        revision = await this.store.update(entry, current.revision);
      } catch (raced) {
        if (raced instanceof KeyChangedError) throw alreadyExists(namespace, key);
        throw raced;
      }
    }
    await this.evict(namespace, victims);
    await this.applied(revision);
    return entry;
  }

  async put(namespace: string, key: string, value: Uint8Array): Promise<CacheEntry> {
    checkKey(key, this.options.limits);
    checkValue(value, this.options.limits);
    const previous = this.view.get(Keys.cache(namespace, key));
    const victims = previous ? [] : this.makeRoom(namespace, key);
    const entry = this.entryFor(namespace, key, value, previous);
    const revision = await this.store.put(entry);
    await this.evict(namespace, victims);
    await this.applied(revision);
    return entry;
  }

  async delete(namespace: string, key: string): Promise<void> {
    checkKey(key, this.options.limits);
    // Always written, even if this view does not hold the key: another replica's
    // write may not have arrived here yet, and the delete must win over it.
    await this.store.remove(Keys.cache(namespace, key));
    await this.until(() => !this.namespaces.get(namespace)?.byWrite.has(key));
  }

  list(
    namespace: string,
    pageSize: number | undefined,
    pageToken: string | undefined,
  ): { keys: string[]; nextPageToken: string } {
    const after = decodePageToken(pageToken);
    const index = this.namespaces.get(namespace);
    if (!index) return { keys: [], nextPageToken: '' };
    return page(index.sorted, after, pageSizeOf(pageSize), (key) =>
      this.isLive(index.byWrite.get(key)),
    );
  }

  async deleteAll(namespace: string): Promise<number> {
    const index = this.namespaces.get(namespace);
    if (!index) return 0;
    const keys = [...index.byWrite.values()];
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      await Promise.all(keys.slice(i, i + DELETE_BATCH).map((key) => this.store.remove(key)));
    }
    const gone = new Set(keys);
    await this.until(() => {
      const now = this.namespaces.get(namespace);
      return !now || ![...now.byWrite.values()].some((k) => gone.has(k));
    });
    return keys.length;
  }

  /** Calls `listener` for every change of the namespace until the returned function is called. */
  watch(namespace: string, listener: (change: CacheChange) => void): () => void {
    const set = this.watchers.get(namespace) ?? new Set();
    this.watchers.set(namespace, set);
    set.add(listener);
    cacheMetrics.watchers.inc();
    return () => {
      if (set.delete(listener)) cacheMetrics.watchers.dec();
      if (set.size === 0) this.watchers.delete(namespace);
    };
  }

  /** Live records of a namespace, as this replica sees them. */
  count(namespace: string): number {
    return this.namespaces.get(namespace)?.byWrite.size ?? 0;
  }

  /**
   * Trims `remove-oldest` namespaces that writers racing on several replicas overfilled
   * back to their limit. Every replica runs it; they pick the same victims, and removals
   * are idempotent.
   */
  async trim(): Promise<void> {
    if (this.trimming) return;
    this.trimming = true;
    try {
      for (const [namespace, index] of this.namespaces) {
        const policy = this.options.policyOf(namespace);
        const excess = index.byWrite.size - policy.maxRecords;
        if (policy.eviction !== 'remove-oldest' || excess <= 0) continue;
        const victims = [...index.byWrite.values()].slice(0, excess);
        await this.evict(namespace, victims);
      }
    } finally {
      this.trimming = false;
    }
  }

  stop(): void {
    clearInterval(this.waitPoll);
    for (const waiter of this.waiters) waiter.resolve();
    this.waiters.clear();
  }

  /** Checks the record limit for a new key; returns the bucket keys to evict after the write. */
  private makeRoom(namespace: string, key: string): string[] {
    const policy = this.options.policyOf(namespace);
    const index = this.namespaces.get(namespace);
    const held = index?.byWrite.size ?? 0;
    if (!index || held < policy.maxRecords || index.byWrite.has(key)) return [];
    if (policy.eviction === 'reject') throw recordLimitError(namespace, policy);
    const victims: string[] = [];
    for (const bucketKey of index.byWrite.values()) {
      if (victims.length >= held - policy.maxRecords + 1) break;
      victims.push(bucketKey);
    }
    return victims;
  }

  private async evict(namespace: string, victims: readonly string[]): Promise<void> {
    if (victims.length === 0) return;
    for (const bucketKey of victims) await this.store.remove(bucketKey);
    cacheMetrics.evicted.inc(victims.length);
    this.options.logger.info(
      { msgId: CacheLogIds.evicted, namespace, evicted: victims.length },
      'oldest records removed to make room',
    );
  }

  private entryFor(
    namespace: string,
    key: string,
    value: Uint8Array,
    previous: CacheEntry | undefined,
  ): CacheEntry {
    const now = Date.now();
    const { ttlSeconds } = this.options.policyOf(namespace);
    return {
      namespace,
      key,
      value: value as CacheEntry['value'],
      createdAtMs: previous?.createdAtMs ?? now,
      updatedAtMs: now,
      expiresAtMs: ttlSeconds > 0 ? now + ttlSeconds * 1000 : 0,
    };
  }

  private isLive(bucketKey: string | undefined): boolean {
    return bucketKey !== undefined && this.view.get(bucketKey) !== undefined;
  }

  /** Resolves once this replica's view has applied `revision` (or after APPLY_WAIT_MS). */
  private applied(revision: number): Promise<void> {
    return this.until(() => this.view.lastRevision >= revision);
  }

  /**
   * Resolves once `done()` holds for this replica's view, or after APPLY_WAIT_MS. While
   * the view lags (a wait timed out and the view has not caught up with that point
   * since, e.g. its watch is recovering after a bus node died), writes do not wait:
   * they are acknowledged by the bus, and waiting would only slow every caller down.
   */
  private until(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    if (this.laggingUntil > this.view.lastRevision) return Promise.resolve();
    this.laggingUntil = 0;
    return new Promise((resolve) => {
      const waiter = {
        done,
        resolve: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.laggingUntil = Math.max(this.laggingUntil, this.view.lastRevision + 1);
        this.options.logger.warn(
          {
            msgId: CacheLogIds.viewLagging,
            applied: this.view.lastRevision,
            waitMs: APPLY_WAIT_MS,
          },
          'local view has not shown a write acknowledged by the bus; answering without waiting until it catches up',
        );
        waiter.resolve();
      }, APPLY_WAIT_MS);
      this.waiters.add(waiter);
      // Some writes change nothing the view reports (a delete marker of an absent key).
      this.waitPoll ??= setInterval(() => this.release(), 5);
    });
  }

  private release(): void {
    if (this.waiters.size === 0 && !this.waitPoll) return;
    for (const waiter of this.waiters) if (waiter.done()) waiter.resolve();
    if (this.waiters.size === 0 && this.waitPoll) {
      clearInterval(this.waitPoll);
      this.waitPoll = undefined;
    }
  }

  private apply(change: ViewChange<CacheEntry>): void {
    const entry = change.op === 'put' ? change.value : change.previous;
    if (Keys.cache(entry.namespace, entry.key) !== change.key) {
      // Written by something other than a cache replica: its key and its content disagree.
      this.options.logger.warn(
        { msgId: CacheLogIds.foreignValue, bucketKey: change.key },
        'cache value whose key does not match its namespace and key ignored',
      );
      return;
    }
    const { namespace, key } = entry;
    if (change.op === 'put') {
      const index = this.namespaces.get(namespace) ?? { byWrite: new Map(), sorted: [] };
      this.namespaces.set(namespace, index);
      if (index.byWrite.delete(key) === false) {
        index.sorted.splice(lowerBound(index.sorted, key), 0, key);
      }
      index.byWrite.set(key, change.key);
      this.notify(namespace, { kind: 'put', entry });
    } else {
      const index = this.namespaces.get(namespace);
      if (index?.byWrite.delete(key)) {
        index.sorted.splice(lowerBound(index.sorted, key), 1);
        if (index.byWrite.size === 0) this.namespaces.delete(namespace);
        this.notify(namespace, { kind: 'deleted', entry, reason: change.reason });
      }
    }
    this.release();
  }

  private notify(namespace: string, change: CacheChange): void {
    const set = this.watchers.get(namespace);
    if (!set) return;
    for (const listener of set) listener(change);
  }
}

export { CacheError, status };
