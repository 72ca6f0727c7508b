/**
 * A typed KV bucket: writes validate and survive leader elections; authoritative
 * reads go to the stream leader. Local views (view.ts) serve the hot path.
 *
 * A value that lapses (a lease, an idle preference, a cache TTL) is written with a
 * per-message TTL: the server removes it when it lapses and leaves an expiry marker that
 * every watcher sees. Removals are purges whose marker expires too, so a bucket holds
 * only live keys and recent removals.
 */
import { randomUUID } from 'node:crypto';
import {
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  PubHeaders,
} from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { headers } from '@nats-io/transport-node';
import { type BucketSpec, REMOVAL_MARKER_TTL_MS } from './buckets.js';
import { InvalidMessageError, reportInvalid } from './invalid.js';
import { type Logger, LogIds } from './log.js';
import { busMetrics } from './metrics.js';
import { Subjects } from './names.js';
import { retryTransient } from './retry.js';
import { LocalView, type ViewOptions } from './view.js';

export interface Revisioned<T> {
  readonly key: string;
  readonly value: T;
  readonly revision: number;
}

/** `create` of a key that holds a live value. */
export class KeyExistsError extends Error {
  override readonly name = 'KeyExistsError';
  constructor(
    readonly bucket: string,
    readonly key: string,
  ) {
    super(`${bucket}: key ${key} already exists`);
  }
}

/** `update` of a key whose revision moved on. */
export class KeyChangedError extends Error {
  override readonly name = 'KeyChangedError';
  constructor(
    readonly bucket: string,
    readonly key: string,
    readonly expectedRevision: number,
  ) {
    super(`${bucket}: key ${key} changed since revision ${expectedRevision}`);
  }
}

export class KvStore<T> {
  constructor(
    private readonly js: JetStreamClient,
    private readonly kv: KV,
    readonly spec: BucketSpec<T>,
    private readonly logger: Logger,
    private readonly signal: AbortSignal,
  ) {}

  /** Writes the value under its key (last writer wins); retried through leader elections. */
  put(value: T): Promise<number> {
    return this.write('put', value);
  }

  /**
   * Writes only if the key holds no value (it never existed, was removed or lapsed):
   * compare-and-set on the key's last revision, which the server enforces on replicated
   * streams, so of many concurrent creates exactly one wins and the others get
   * KeyExistsError.
   */
  async create(value: T): Promise<number> {
    const key = this.spec.key(value);
    try {
      return await this.write('create', value, 0);
    } catch (error) {
      if (!isWrongLastSequence(error)) throw error;
    }
    // A removal or an expiry leaves a marker as the key's last message: create over it.
    const last = await this.retry(`get ${key}`, () => this.kv.get(key));
    if (last?.operation === 'PUT') throw new KeyExistsError(this.spec.name, key);
    try {
      return await this.write('create', value, last?.revision ?? 0);
    } catch (error) {
      if (isWrongLastSequence(error)) throw new KeyExistsError(this.spec.name, key);
      throw error;
    }
  }

  /**
   * Writes only if the key's last revision is still `revision`; a KeyChangedError says
   * someone else wrote (or the value lapsed) in between.
   */
  async update(value: T, revision: number): Promise<number> {
    try {
      return await this.write('update', value, revision);
    } catch (error) {
      if (isWrongLastSequence(error)) {
        throw new KeyChangedError(this.spec.name, this.spec.key(value), revision);
      }
      throw error;
    }
  }

  /** The stored value, read from the stream leader; undefined if absent or invalid. */
  async get(key: string): Promise<Revisioned<T> | undefined> {
    const entry = await this.retry(`get ${key}`, () => this.kv.get(key));
    if (entry?.operation !== 'PUT') return undefined;
    try {
      const value = this.spec.codec.decode(entry.value, { subject: key, seq: entry.revision });
      return { key, value, revision: entry.revision };
    } catch (error) {
      if (!(error instanceof InvalidMessageError)) throw error;
      reportInvalid(this.logger, this.spec.name, error);
      return undefined;
    }
  }

  /**
   * Removes the key: a purge, whose marker tells every watcher and then expires itself,
   * so removed keys do not accumulate in the bucket.
   */
  remove(key: string): Promise<void> {
    return this.retry(`remove ${key}`, () =>
      this.kv.purge(key, { ttl: ttlHeader(REMOVAL_MARKER_TTL_MS) }),
    );
  }

  /**
   * Gives every stored value that lapses its per-message TTL. Values written before the
   * bucket allowed TTLs carry none, so the server would never remove them: a lapsed one
   * is removed, a live one written again as it is. Both are compare-and-set on the
   * value's revision, so a key written meanwhile (with its own TTL) is left alone.
   */
  async giveLifetimes(): Promise<{ rewritten: number; removed: number }> {
    const stored = new Map<string, Revisioned<T>>();
    const view = this.view({ hold: false });
    view.onEntry((change) => {
      if (change.op === 'put') stored.set(change.key, change);
      else stored.delete(change.key);
    });
    try {
      await view.ready;
    } finally {
      view.stop();
    }
    let rewritten = 0;
    let removed = 0;
    const giveLifetime = async ({ key, value, revision }: Revisioned<T>) => {
      const expiresAt = this.spec.expiresAt(value);
      if (expiresAt === undefined) return;
      try {
        if (expiresAt <= Date.now()) {
          await this.retry(`remove ${key}`, () =>
            this.kv.purge(key, { previousSeq: revision, ttl: ttlHeader(REMOVAL_MARKER_TTL_MS) }),
          );
          removed++;
        } else {
          await this.update(value, revision);
          rewritten++;
        }
      } catch (error) {
        if (!(error instanceof KeyChangedError || isWrongLastSequence(error))) throw error;
      }
    };
    const all = [...stored.values()];
    for (let i = 0; i < all.length; i += LIFETIME_BATCH) {
      await Promise.all(all.slice(i, i + LIFETIME_BATCH).map(giveLifetime));
    }
    return { rewritten, removed };
  }

  /** Starts a local view of the whole bucket; await its `ready` before trusting it. */
  view(options?: ViewOptions<T>): LocalView<T> {
    return new LocalView(this.kv, this.spec, this.logger, this.signal, options);
  }

  /**
   * One publish to the key's subject with the value's lifetime as its TTL and, when
   * `expectedRevision` is given, the compare-and-set header.
   *
   * A compare-and-set write also carries a message id, the same on every attempt: when
   * an election loses the acknowledgement of an attempt that landed, the retry is
   * answered as a duplicate of it (its revision) instead of being refused because the
   * key moved on, which would report a won decision as lost.
   */
  private async write(what: string, value: T, expectedRevision?: number): Promise<number> {
    const bytes = this.spec.codec.encode(value);
    const key = this.spec.key(value);
    const expiresAt = this.spec.expiresAt(value);
    const h = headers();
    let msgID: string | undefined;
    if (expectedRevision !== undefined) {
      h.set(PubHeaders.ExpectedLastSubjectSequenceHdr, String(expectedRevision));
      msgID = randomUUID();
    }
    if (expiresAt !== undefined) h.set(PubHeaders.MessageTTL, ttlHeader(expiresAt - Date.now()));
    const subject = Subjects.kv(this.spec.name, key);
    return this.retry(`${what} ${key}`, async () => {
      const ack = await this.js.publish(subject, bytes, { headers: h, msgID });
      return ack.seq;
    });
  }

  private retry<R>(what: string, op: () => Promise<R>): Promise<R> {
    const target = this.spec.name;
    return retryTransient(op, {
      signal: this.signal,
      onRetry: (error, attempt, delayMs) => {
        busMetrics.publishRetries.inc({ target });
        if (attempt === 1 || attempt % 10 === 0) {
          this.logger.warn(
            {
              msgId: LogIds.publishRetry,
              target,
              what,
              attempt,
              delayMs,
              err: error,
            },
            'bus write failed, retrying',
          );
        }
      },
    });
  }
}

/** Writes in flight at once while values are given their lifetimes. */
const LIFETIME_BATCH = 256;

/**
 * A TTL header value in whole seconds, rounded up (the server's resolution is one
 * second and it refuses less): the server removes a value at most a second after its
 * readers stop seeing it, never before.
 */
function ttlHeader(ms: number): string {
  return `${Math.max(1, Math.ceil(ms / 1000))}s`;
}

function isWrongLastSequence(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamWrongLastSequence ||
      error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}
