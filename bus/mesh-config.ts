/**
 * The mesh configuration's versions on the bus: what every launcher applies for its
 * host. Each version is one key of the config bucket, created with compare-and-set on
 * the key after the version it was based on: of two operators publishing on the same
 * version, exactly one wins and the other learns which version beat it. A version is
 * never rewritten, so the bucket is also the configuration's history.
 */
import { isDeepStrictEqual } from 'node:util';
import type { JetStreamManager } from '@nats-io/jetstream';
import { ConfigBucket } from './buckets.js';
import { InvalidMessageError, reportInvalid } from './invalid.js';
import { type Logger, LogIds } from './log.js';
import { Keys, kvStream, Subjects } from './names.js';
import { BusConfigError, PROVISION_HINT } from './provision.js';
import { retryTransient } from './retry.js';
import type { MeshConfigVersionRecord } from './schemas.js';
import { KeyExistsError, type KvStore } from './store.js';

export interface MeshConfigVersion {
  /** 1, 2, 3 … (no gaps). */
  readonly version: number;
  /** The YAML text exactly as applied. */
  readonly content: string;
  /** Who applied it (bus identity and OS user, never a secret). */
  readonly author: string;
  readonly publishedAt: Date;
  /** One line: what changed, e.g. "greeter: version 1 → 2; cache: instances 1 → 2". */
  readonly summary: string;
  /** The version it replaced (0 for the first). */
  readonly basedOn: number;
  /** Hosts also restart the instances it does not change (`config apply --force`). */
  readonly restartUnchanged: boolean;
}

/** Thrown by publish when another version was published first; names it. */
export class ConfigConflictError extends Error {
  override readonly name = 'ConfigConflictError';
  constructor(
    readonly basedOn: number,
    readonly current: MeshConfigVersion,
  ) {
    super(
      `the mesh configuration moved on: version ${current.version} by ${current.author} at ${current.publishedAt.toISOString()} ` +
        `(${current.summary || 'no summary'}) replaced version ${basedOn}`,
    );
  }
}

export interface MeshConfigStore {
  latest(): Promise<MeshConfigVersion | undefined>;
  get(version: number): Promise<MeshConfigVersion | undefined>;
  /** Oldest first. */
  history(): Promise<MeshConfigVersion[]>;
  /** Compare-and-set on basedOn: exactly one of two concurrent publishes wins. */
  publish(next: {
    basedOn: number;
    content: string;
    author: string;
    summary: string;
    restartUnchanged?: boolean;
  }): Promise<MeshConfigVersion>;
  /** Delivers the latest version first (if any), then every newer one in order; survives reconnects. */
  watch(onVersion: (v: MeshConfigVersion) => void): Promise<{ stop(): Promise<void> }>;
}

const fromRecord = (r: MeshConfigVersionRecord): MeshConfigVersion => ({
  version: r.version,
  content: r.content,
  author: r.author,
  publishedAt: new Date(r.publishedAtMs),
  summary: r.summary,
  basedOn: r.basedOn,
  restartUnchanged: r.restartUnchanged,
});

export class BusMeshConfigStore implements MeshConfigStore {
  private opened: Promise<KvStore<MeshConfigVersionRecord>> | undefined;

  constructor(
    private readonly open: () => Promise<KvStore<MeshConfigVersionRecord>>,
    private readonly jsm: JetStreamManager,
    private readonly logger: Logger,
    private readonly signal: AbortSignal,
  ) {}

  /**
   * The last message of the bucket's stream, read from its leader: versions are only
   * ever created, in order, so the last one stored is the latest.
   */
  async latest(): Promise<MeshConfigVersion | undefined> {
    const stream = kvStream(ConfigBucket.name);
    const message = await retryTransient(
      () =>
        this.jsm.streams.getMessage(stream, {
          last_by_subj: Subjects.kv(ConfigBucket.name, '>'),
        }),
      { signal: this.signal },
    ).catch((error: unknown) => {
      if ((error as Error).name !== 'StreamNotFoundError') throw error;
      throw new BusConfigError(`the bus has no stream ${stream}: ${PROVISION_HINT}`, {
        cause: error,
      });
    });
    if (!message) return undefined;
    const key = Keys.bucketKeyOf(ConfigBucket.name, message.subject);
    try {
      const record = ConfigBucket.codec.decode(message.data, { subject: key, seq: message.seq });
      if (Keys.configVersion(record.version) !== key) {
        throw new InvalidMessageError(
          ConfigBucket.codec.typeName,
          `version ${record.version} stored under key ${key}`,
          { subject: key, seq: message.seq },
        );
      }
      return fromRecord(record);
    } catch (error) {
      if (!(error instanceof InvalidMessageError)) throw error;
      // A version nobody can read cannot be built on: refuse rather than skip it.
      reportInvalid(this.logger, ConfigBucket.name, error);
      throw error;
    }
  }

  async get(version: number): Promise<MeshConfigVersion | undefined> {
    const stored = await (await this.store()).get(Keys.configVersion(version));
    return stored && stored.value.version === version ? fromRecord(stored.value) : undefined;
  }

  async history(): Promise<MeshConfigVersion[]> {
    const view = (await this.store()).view();
    try {
      await view.ready;
      return [...view.values()].map(fromRecord).sort((a, b) => a.version - b.version);
    } finally {
      view.stop();
    }
  }

  async publish(next: {
    basedOn: number;
    content: string;
    author: string;
    summary: string;
    restartUnchanged?: boolean;
  }): Promise<MeshConfigVersion> {
    const store = await this.store();
    // The chain has no gaps: a version is created only on top of one that exists.
    if (next.basedOn > 0 && !(await this.get(next.basedOn))) {
      const latest = await this.latest();
      throw new RangeError(
        `version ${next.basedOn} does not exist (latest: ${latest?.version ?? 'none'})`,
      );
    }
    const record: MeshConfigVersionRecord = {
      version: next.basedOn + 1,
      content: next.content,
      author: next.author,
      publishedAtMs: Date.now(),
      summary: next.summary,
      basedOn: next.basedOn,
      restartUnchanged: next.restartUnchanged ?? false,
    };
    try {
      await store.create(record);
    } catch (error) {
      if (!(error instanceof KeyExistsError)) throw error;
      // A create retried after its acknowledgement was lost finds its own version.
      const taken = await store.get(Keys.configVersion(record.version));
      if (taken && isDeepStrictEqual(taken.value, record)) return fromRecord(record);
      const winner = (await this.latest()) ?? (taken && fromRecord(taken.value));
      if (!winner) throw error;
      throw new ConfigConflictError(next.basedOn, winner);
    }
    return fromRecord(record);
  }

  async watch(onVersion: (v: MeshConfigVersion) => void): Promise<{ stop(): Promise<void> }> {
    const store = await this.store();
    const first = await this.latest();
    let delivered = 0;
    const deliver = (v: MeshConfigVersion) => {
      delivered = v.version;
      try {
        onVersion(v);
      } catch (error) {
        this.logger.error(
          {
            msgId: LogIds.listenerFailed,
            bucket: ConfigBucket.name,
            err: error,
          },
          'mesh configuration listener failed',
        );
      }
    };
    if (first) deliver(first);
    // The view replays the bucket from its start and follows it through reconnects
    // and bus node failures; versions up to the one delivered are skipped.
    const view = store.view({ hold: false });
    view.onEntry((change) => {
      if (change.op === 'put' && change.value.version > delivered)
        deliver(fromRecord(change.value));
    });
    await view.ready;
    return {
      stop: async () => view.stop(),
    };
  }

  private store(): Promise<KvStore<MeshConfigVersionRecord>> {
    this.opened ??= this.open();
    this.opened.catch(() => {
      this.opened = undefined;
    });
    return this.opened;
  }
}
