/**
 * A typed KV bucket: writes validate and survive leader elections; authoritative
 * reads go to the stream leader. Local views (view.ts) serve the hot path.
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { BucketSpec } from './buckets.js';
import { InvalidMessageError, reportInvalid } from './invalid.js';
import { type Logger, LogIds } from './log.js';
import { busMetrics } from './metrics.js';
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

export class KvStore<T> {
  constructor(
    private readonly kv: KV,
    readonly spec: BucketSpec<T>,
    private readonly logger: Logger,
    private readonly signal: AbortSignal,
  ) {}

  /** Writes the value under its key (last writer wins); retried through leader elections. */
  async put(value: T): Promise<number> {
    const bytes = this.spec.codec.encode(value);
    const key = this.spec.key(value);
    return this.retry(`put ${key}`, () => this.kv.put(key, bytes));
  }

  /**
   * Writes only if the key has no value (never existed, or removed). For a key that
   * never existed this is exact; after a removal it is a compare-and-set of the delete
   * marker's revision, which nats-server enforces on replicated streams only from
   * 2.9.21 on — so no correctness property may rest on it.
   */
  async create(value: T): Promise<number> {
    const bytes = this.spec.codec.encode(value);
    const key = this.spec.key(value);
    try {
      return await this.retry(`create ${key}`, () => this.kv.create(key, bytes));
    } catch (error) {
      if (
        error instanceof JetStreamApiError &&
        (error.code === JetStreamApiCodes.StreamWrongLastSequence ||
          error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
      ) {
        throw new KeyExistsError(this.spec.name, key);
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
   * Removes the key's value with a delete marker (with history 1 the marker replaces
   * it). Never a purge: on nats-server 2.9 the rollup of a subject purge advances
   * consumers past live messages of other keys that they had not yet delivered, so
   * local views and subscribers would silently miss writes.
   */
  remove(key: string): Promise<void> {
    return this.retry(`delete ${key}`, () => this.kv.delete(key));
  }

  /** Starts a local view of the whole bucket; await its `ready` before trusting it. */
  view(options?: ViewOptions): LocalView<T> {
    return new LocalView(this.kv, this.spec, this.logger, this.signal, options);
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
              err: (error as Error).message,
            },
            'bus write failed, retrying',
          );
        }
      },
    });
  }
}
