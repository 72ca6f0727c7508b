/**
 * A local view of a KV bucket: every value in memory, fed by a watch, so that a
 * routing decision is a map look-up and never waits on the bus.
 *
 * The server removes a lapsed value (per-message TTL) and its marker reaches the watch;
 * the view also applies expiry from the value's own timestamps, so a lapsed value is
 * invisible to `get`/`values` at once, and listeners hear of it when the expiry timer
 * passes it, without waiting for the server's one-second timer.
 */
import type { KV, KvWatchEntry } from '@nats-io/kv';
import type { BucketSpec } from './buckets.js';
import type { MessageOrigin } from './codec.js';
import { InvalidMessageError, reportInvalid } from './invalid.js';
import { type Logger, LogIds } from './log.js';
import { busMetrics } from './metrics.js';
import { retryTransient } from './retry.js';

export type RemovalReason = 'deleted' | 'expired' | 'invalid';

export type ViewChange<T> =
  | {
      readonly op: 'put';
      readonly key: string;
      readonly value: T;
      readonly previous?: T;
      readonly revision: number;
    }
  | {
      readonly op: 'remove';
      readonly key: string;
      readonly previous: T;
      readonly reason: RemovalReason;
    };

/** Every applied entry of the bucket, in order: for readers that keep their own copy. */
export type EntryChange<T> =
  | { readonly op: 'put'; readonly key: string; readonly value: T; readonly revision: number }
  | { readonly op: 'remove'; readonly key: string; readonly revision: number };

export interface ViewOptions<T> {
  /**
   * Keep the values (default). A view that does not keep them only tells `onEntry`
   * listeners: for readers that hold a bucket in a more compact form of their own
   * (`get`, `entries`, `size` and `onChange` then see nothing).
   */
  readonly hold?: boolean;
  /**
   * Decodes a value instead of the bucket's codec: for a reader loading a large bucket
   * with a cheaper decoder that accepts exactly what the codec accepts (and throws the
   * codec's InvalidMessageError otherwise).
   */
  readonly decode?: (bytes: Uint8Array, origin: MessageOrigin) => T;
}

interface Held<T> {
  readonly value: T;
  readonly revision: number;
  readonly expiresAt: number | undefined;
  /** Listeners were told it expired; a later renewal is announced as new. */
  expired: boolean;
}

/** Scans for lapsed values no more often than this, whatever the values say. */
const MIN_EXPIRY_CHECK_MS = 100;
const MAX_TIMER_MS = 2 ** 31 - 1;
/** How often a view checks that its watch keeps up with the stream. */
const WATCHDOG_INTERVAL_MS = 2000;

export class LocalView<T> {
  /** Resolves once every value that existed when the view started is loaded. */
  readonly ready: Promise<void>;
  private readonly held = new Map<string, Held<T>>();
  private readonly listeners = new Set<(change: ViewChange<T>) => void>();
  private readonly entryListeners = new Set<(change: EntryChange<T>) => void>();
  private readonly hold: boolean;
  private readonly decode: (bytes: Uint8Array, origin: MessageOrigin) => T;
  private readonly stopper = new AbortController();
  private expiryTimer: NodeJS.Timeout | undefined;
  private nextExpiryCheck = Number.POSITIVE_INFINITY;
  private watch: Awaited<ReturnType<KV['watch']>> | undefined;
  private applied = 0;

  constructor(
    private readonly kv: KV,
    private readonly spec: BucketSpec<T>,
    private readonly logger: Logger,
    busSignal: AbortSignal,
    options: ViewOptions<T> = {},
  ) {
    this.hold = options.hold ?? true;
    this.decode = options.decode ?? ((bytes, origin) => spec.codec.decode(bytes, origin));
    const signal = AbortSignal.any([busSignal, this.stopper.signal]);
    this.ready = this.run(signal);
    // `ready` may be awaited late or never (a component that only listens).
    this.ready.catch(() => {});
  }

  /** The highest bucket revision applied: a change stream resumed after it misses nothing. */
  get lastRevision(): number {
    return this.applied;
  }

  get size(): number {
    let live = 0;
    const now = Date.now();
    for (const held of this.held.values()) if (!lapsed(held, now)) live++;
    return live;
  }

  /** The live value of a key; undefined if absent or lapsed. */
  get(key: string): T | undefined {
    const held = this.held.get(key);
    return held && !lapsed(held, Date.now()) ? held.value : undefined;
  }

  /** The revision of the live value of a key. */
  revision(key: string): number | undefined {
    const held = this.held.get(key);
    return held && !lapsed(held, Date.now()) ? held.revision : undefined;
  }

  *entries(): IterableIterator<[key: string, value: T]> {
    const now = Date.now();
    for (const [key, held] of this.held) if (!lapsed(held, now)) yield [key, held.value];
  }

  *values(): IterableIterator<T> {
    for (const [, value] of this.entries()) yield value;
  }

  /** Calls `listener` for every change after this point; returns the unsubscribe function. */
  onChange(listener: (change: ViewChange<T>) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls `listener` for every entry applied after this point; returns the unsubscribe function. */
  onEntry(listener: (change: EntryChange<T>) => void): () => void {
    this.entryListeners.add(listener);
    return () => this.entryListeners.delete(listener);
  }

  stop(): void {
    this.stopper.abort();
    clearTimeout(this.expiryTimer);
    this.watch?.stop();
    busMetrics.viewEntries.dec({ bucket: this.spec.name }, this.held.size);
    this.held.clear();
  }

  private async run(signal: AbortSignal): Promise<void> {
    const bucket = this.spec.name;
    // The watch delivers the last value of every key, then updates. The view is
    // loaded once it has seen the stream's last sequence as it was before the watch.
    const state = await retryTransient(async () => (await this.kv.status()).streamInfo.state, {
      signal,
    });
    const loadedAt = state.messages === 0 ? 0 : state.last_seq;
    const watch = await retryTransient(() => this.kv.watch(), { signal });
    this.watch = watch;
    if (signal.aborted) watch.stop();
    let markReady: () => void = () => {};
    const loaded = new Promise<void>((resolve) => {
      markReady = resolve;
    });
    if (loadedAt === 0) markReady();
    const follow = (current: typeof watch) =>
      (async () => {
        try {
          for await (const entry of current) {
            // A resumed watch may overlap what the one it replaced delivered.
            if (entry.revision <= this.applied) continue;
            this.apply(entry);
            if (entry.revision >= loadedAt) markReady();
          }
        } catch (error) {
          if (!signal.aborted && this.watch === current) {
            this.logger.error(
              { msgId: LogIds.viewFailed, bucket, err: error },
              'bucket watch ended',
            );
          }
        }
      })();
    void follow(watch);
    this.watchdog(signal, async () => {
      const from = this.applied + 1;
      this.logger.warn(
        { msgId: LogIds.viewResumed, bucket, fromRevision: from },
        'bucket watch stalled behind the stream; resuming it',
      );
      this.watch?.stop();
      const resumed = await this.kv.watch({ resumeFromRevision: from });
      if (signal.aborted) {
        resumed.stop();
        return;
      }
      this.watch = resumed;
      void follow(resumed);
    });
    await Promise.race([
      loaded,
      new Promise<never>((_, reject) =>
        signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
      ),
    ]);
    this.logger.info(
      { msgId: LogIds.viewReady, bucket, entries: this.held.size },
      'local view loaded',
    );
  }

  /**
   * After a bus node dies, a watch can stop delivering for a minute or more while its
   * consumer is re-created (its heartbeat checks slow down after a reset). A view
   * must not serve stale values that long: when the stream holds messages the view
   * has not applied and nothing arrived for two checks in a row, the watch is
   * replaced by one resuming after the last applied revision.
   */
  private watchdog(signal: AbortSignal, resume: () => Promise<void>): void {
    let seen = this.applied;
    let stalled = 0;
    let busy = false;
    // Set while a resume is under way: the old watch is stopped first, so a resume that
    // failed (no leader yet) leaves no watch at all and is retried on the next round.
    let resuming = false;
    const timer = setInterval(async () => {
      if (busy || signal.aborted) return;
      busy = true;
      try {
        const last = (await this.kv.status()).streamInfo.state.last_seq;
        stalled = last > this.applied && this.applied === seen ? stalled + 1 : 0;
        seen = this.applied;
        if (stalled >= 2 || resuming) {
          stalled = 0;
          resuming = true;
          await resume();
          resuming = false;
        }
      } catch {
        // The bus is away or has no leader: the next round asks again.
      } finally {
        busy = false;
      }
    }, WATCHDOG_INTERVAL_MS);
    timer.unref();
    signal.addEventListener('abort', () => clearInterval(timer), { once: true });
  }

  private apply(entry: KvWatchEntry): void {
    this.applied = Math.max(this.applied, entry.revision);
    const previous = this.held.get(entry.key);
    if (entry.operation !== 'PUT') {
      this.emitEntry({ op: 'remove', key: entry.key, revision: entry.revision });
      this.remove(
        entry.key,
        previous,
        previous && expiredByServer(previous) ? 'expired' : 'deleted',
      );
      return;
    }
    let value: T;
    try {
      value = this.decode(entry.value, { subject: entry.key, seq: entry.revision });
    } catch (error) {
      if (!(error instanceof InvalidMessageError)) throw error;
      reportInvalid(this.logger, this.spec.name, error);
      // The key's current value is unreadable: holding the older one would be a lie.
      this.emitEntry({ op: 'remove', key: entry.key, revision: entry.revision });
      this.remove(entry.key, previous, 'invalid');
      return;
    }
    this.emitEntry({ op: 'put', key: entry.key, value, revision: entry.revision });
    if (!this.hold) return;
    const expiresAt = this.spec.expiresAt(value);
    const held: Held<T> = { value, revision: entry.revision, expiresAt, expired: false };
    if (lapsed(held, Date.now())) held.expired = true;
    if (!previous) busMetrics.viewEntries.inc({ bucket: this.spec.name });
    this.held.set(entry.key, held);
    if (expiresAt !== undefined) this.scheduleExpiryCheck(expiresAt);
    const wasLive = previous !== undefined && !previous.expired;
    if (!held.expired) {
      this.emit({
        op: 'put',
        key: entry.key,
        value,
        revision: entry.revision,
        ...(wasLive ? { previous: previous.value } : {}),
      });
    } else if (wasLive) {
      this.emit({ op: 'remove', key: entry.key, previous: previous.value, reason: 'expired' });
    }
  }

  private remove(key: string, previous: Held<T> | undefined, reason: RemovalReason): void {
    if (!previous) return;
    this.held.delete(key);
    busMetrics.viewEntries.dec({ bucket: this.spec.name });
    if (!previous.expired) this.emit({ op: 'remove', key, previous: previous.value, reason });
  }

  private scheduleExpiryCheck(at: number): void {
    const when = Math.max(at, Date.now() + MIN_EXPIRY_CHECK_MS);
    if (when >= this.nextExpiryCheck) return;
    clearTimeout(this.expiryTimer);
    this.nextExpiryCheck = when;
    this.expiryTimer = setTimeout(
      () => this.checkExpiry(),
      Math.min(when - Date.now(), MAX_TIMER_MS),
    );
    this.expiryTimer.unref();
  }

  private checkExpiry(): void {
    this.nextExpiryCheck = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const [key, held] of this.held) {
      if (held.expired || held.expiresAt === undefined) continue;
      if (held.expiresAt <= now) {
        held.expired = true;
        this.emit({ op: 'remove', key, previous: held.value, reason: 'expired' });
      } else {
        next = Math.min(next, held.expiresAt);
      }
    }
    if (next !== Number.POSITIVE_INFINITY) this.scheduleExpiryCheck(next);
  }

  private emitEntry(change: EntryChange<T>): void {
    this.notify(this.entryListeners, change);
  }

  private emit(change: ViewChange<T>): void {
    this.notify(this.listeners, change);
  }

  private notify<C extends { readonly key: string }>(
    listeners: Iterable<(change: C) => void>,
    change: C,
  ): void {
    for (const listener of listeners) {
      try {
        listener(change);
      } catch (error) {
        // A listener's bug must not stop the view that every other reader relies on.
        this.logger.error(
          {
            msgId: LogIds.listenerFailed,
            bucket: this.spec.name,
            key: change.key,
            err: error,
          },
          'view listener threw',
        );
      }
    }
  }
}

/**
 * Whether the server's removal of a value is its expiry: the server rounds lifetimes up
 * to whole seconds, so its marker comes up to a second after the value lapsed here.
 */
function expiredByServer(held: Held<unknown>): boolean {
  return held.expiresAt !== undefined && held.expiresAt <= Date.now() + 1000;
}

function lapsed(held: Held<unknown>, now: number): boolean {
  return held.expiresAt !== undefined && held.expiresAt <= now;
}
