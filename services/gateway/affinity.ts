/**
 * Sticky preferences as every gateway replica sees them: the whole `halyard-affinity`
 * bucket in memory (fed by a local view that keeps no values itself, held compactly:
 * compact-preferences.ts), this replica's decisions that the bucket does not show
 * yet, and users per instance derived from both — so routing a known user is a
 * map look-up and every replica enforces the same `lb.maxUsersPerInstance`.
 *
 * Writes never block a call: decisions, "last seen" refreshes and releases (an
 * instance ending its user's preference at logoff) are queued and written in the
 * background. While the bus connection is down nothing is written;
 * when it returns, a queued write whose key meanwhile got a newer value elsewhere is
 * dropped instead of overriding it. A call never waits for a compare-and-set round
 * trip: replicas converge because they decide alike (rendezvous hashing over the same
 * live instances) and, when they do not, adopt the bucket's last value.
 */
import type { Logger } from 'pino';
import {
  type AffinityPreference,
  type EntryChange,
  Keys,
  type KvStore,
  type LocalView,
  type ViewOptions,
} from '../../bus/index.js';
import { CompactPreferences, decodePreference } from './compact-preferences.js';
import { GatewayLogIds } from './log-ids.js';

interface Pending {
  readonly value: AffinityPreference;
  /** Revision of our write once acknowledged; the view showing it retires the entry. */
  revision: number | undefined;
  writing: boolean;
}

/**
 * How a gateway views the bucket: the table holds the values compactly, so the view
 * keeps none, and decodes them with the loader's cheaper decoder.
 */
export const affinityViewOptions: ViewOptions<AffinityPreference> = {
  hold: false,
  decode: decodePreference,
};

/** Milliseconds since the epoch: `Date.now` but in tests, which move time without waiting. */
export type Clock = () => number;

/** Where the bucket's values and removals go; a KvStore in production. */
export type AffinityWriter = Pick<KvStore<AffinityPreference>, 'put' | 'remove'>;

/** A preference released here whose removal the bucket has not acknowledged yet. */
interface Release {
  /** When it was released: values seen last before then are the released one. */
  readonly atMs: number;
  writing: boolean;
}

export interface AffinityTableOptions {
  readonly gatewayId: string;
  /** Whether writes can go out now (the bus connection is up). */
  readonly connected: () => boolean;
  /** Delay between rounds of the writer while writes wait or fail. */
  readonly retryMs?: number;
  /** How often lapsed preferences leave the per-instance counts. */
  readonly expiryCheckMs?: number;
  /** What "now" is when preferences are decided, refreshed and lapse. */
  readonly now?: Clock;
}

export class AffinityTable {
  private readonly pending = new Map<string, Pending>();
  private readonly releases = new Map<string, Release>();
  /** `serviceId` → `instanceId` → users whose effective preference names it. */
  private readonly counts = new Map<string, Map<string, number>>();
  private held = 0;
  /** The bucket, compactly (the view feeding it keeps no values of its own). */
  private readonly store = new CompactPreferences();
  private readonly expiryTimer: NodeJS.Timeout;
  private flushing = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly unsubscribe: () => void;
  /** `serviceId` → its key prefix in the bucket, so a look-up builds no key by regex. */
  private readonly prefixes = new Map<string, string>();
  readonly now: Clock;

  constructor(
    private readonly view: LocalView<AffinityPreference>,
    private readonly writer: AffinityWriter,
    private readonly options: AffinityTableOptions,
    private readonly logger: Logger,
  ) {
    this.now = options.now ?? Date.now;
    this.unsubscribe = view.onEntry((change) => this.applyEntry(change));
    this.expiryTimer = setInterval(() => this.expire(), options.expiryCheckMs ?? 2000);
    this.expiryTimer.unref();
  }

  /** Preferences held (view plus this replica's unwritten ones). */
  get size(): number {
    return this.held;
  }

  /** Queued writes and removals not yet acknowledged. */
  get queued(): number {
    let n = this.releases.size;
    for (const p of this.pending.values()) if (p.revision === undefined) n++;
    return n;
  }

  /** The effective preference of a user for a service; undefined if none or idle too long. */
  get(serviceId: string, userKey: string): AffinityPreference | undefined {
    const key = this.keyOf(serviceId, userKey);
    const local = this.pending.get(key);
    const now = this.now();
    if (local !== undefined && !lapsed(local.value, now)) return local.value;
    return this.store.get(key, now);
  }

  /**
   * The hot path's look-up: the instance of the user's live preference, building no
   * value; `touchIfDue` then refreshes "last seen" when a tenth of the idle period passed.
   */
  instanceOf(serviceId: string, userKey: string, now: number): string | undefined {
    const key = this.keyOf(serviceId, userKey);
    const local = this.pending.get(key);
    if (local !== undefined && !lapsed(local.value, now)) return local.value.instanceId;
    return this.store.liveInstance(key, now);
  }

  touchIfDue(serviceId: string, userKey: string, idleSeconds: number, now: number): void {
    const key = this.keyOf(serviceId, userKey);
    const local = this.pending.get(key);
    const lastSeen = local !== undefined ? local.value.lastSeenAtMs : this.store.lastSeenOf(key);
    if (now - lastSeen < idleSeconds * 100) return;
    const preference = local?.value ?? this.store.get(key, now);
    if (preference !== undefined) this.touch(preference, now);
  }

  /** Users whose preference names this instance. */
  usersOf(serviceId: string, instanceId: string): number {
    return this.counts.get(serviceId)?.get(instanceId) ?? 0;
  }

  /** Records a decision (new, or moved) and writes it in the background. */
  assign(
    serviceId: string,
    userKey: string,
    instanceId: string,
    idleSeconds: number,
    now = this.now(),
  ): AffinityPreference {
    const value: AffinityPreference = {
      serviceId,
      userKey,
      instanceId,
      createdAtMs: now,
      lastSeenAtMs: now,
      idleSeconds,
      gatewayId: this.options.gatewayId,
    };
    this.setPending(Keys.affinity(serviceId, userKey), value);
    return value;
  }

  /**
   * A call used this preference: refreshes "last seen" in the bucket at most once per
   * tenth of the idle period (not per call).
   */
  touch(preference: AffinityPreference, now: number): void {
    // `preference` is the effective one: a refresh queued here shows at once.
    if (now - preference.lastSeenAtMs < preference.idleSeconds * 100) return;
    const key = Keys.affinity(preference.serviceId, preference.userKey);
    this.setPending(key, { ...preference, lastSeenAtMs: now, gatewayId: this.options.gatewayId });
  }

  /**
   * Forgets the user's preference here at once and removes it from the bucket in the
   * background; other replicas forget it when their views see the removal. The user's
   * next call is balanced afresh. A value of the key seen last before the release
   * (a refresh already on its way) is not adopted again while the removal is unwritten.
   */
  release(serviceId: string, userKey: string): void {
    const key = this.keyOf(serviceId, userKey);
    const before = this.effectiveCounted(key);
    this.pending.delete(key);
    this.store.delete(key);
    this.moved(before, undefined);
    this.releases.set(key, { atMs: this.now(), writing: false });
    this.scheduleFlush(0);
  }

  /**
   * The bucket key, as `Keys.affinity` forms it, without validating the user key on
   * every call: it comes from identity.ts (always a valid digest).
   */
  private keyOf(serviceId: string, userKey: string): string {
    let prefix = this.prefixes.get(serviceId);
    if (prefix === undefined) {
      prefix = Keys.affinityPrefix(serviceId);
      this.prefixes.set(serviceId, prefix);
    }
    return prefix + userKey;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.flushTimer);
    clearInterval(this.expiryTimer);
    this.unsubscribe();
  }

  private setPending(key: string, value: AffinityPreference): void {
    // A removal not sent yet is moot: this value replaces the released one.
    if (this.releases.get(key)?.writing === false) this.releases.delete(key);
    const before = this.effectiveCounted(key);
    this.pending.set(key, { value, revision: undefined, writing: false });
    this.moved(before, value);
    this.scheduleFlush(0);
  }

  /** What the key counts for in users per instance: a local decision, else the live stored value. */
  private effectiveCounted(key: string): AffinityPreference | undefined {
    const local = this.pending.get(key);
    if (local !== undefined) return local.value;
    return this.store.countedInstance(key) === undefined ? undefined : this.store.peek(key);
  }

  private applyEntry(change: EntryChange<AffinityPreference>): void {
    const key = change.key;
    if (change.op === 'put' && !this.pending.has(key) && !this.releases.has(key)) {
      // Nothing of this replica's own for the key (every key while a bucket loads):
      // the bucket's value is the effective one.
      const now = this.now();
      const replaced = this.store.set(key, change.value, now);
      this.moved(replaced, lapsed(change.value, now) ? undefined : change.value);
      return;
    }
    const before = this.effectiveCounted(key);
    if (change.op === 'put') {
      const released = this.releases.get(key);
      if (released !== undefined && change.value.lastSeenAtMs <= released.atMs) return;
      this.store.set(key, change.value, this.now());
    } else {
      this.store.delete(key);
    }
    const local = this.pending.get(key);
    if (local !== undefined && change.op === 'put') {
      const seenOurs = local.revision !== undefined && change.revision >= local.revision;
      // Not yet written and the bucket already has a value as new: ours is stale.
      const newerElsewhere =
        local.revision === undefined &&
        !local.writing &&
        change.value.lastSeenAtMs >= local.value.lastSeenAtMs;
      if (seenOurs || newerElsewhere) this.pending.delete(key);
    }
    this.moved(before, this.effectiveCounted(key));
  }

  private expire(): void {
    this.store.expire(this.now(), (key, value) => {
      if (!this.pending.has(key)) this.count(value, -1);
    });
  }

  private moved(
    before: AffinityPreference | undefined,
    after: AffinityPreference | undefined,
  ): void {
    if (before?.instanceId === after?.instanceId && before?.serviceId === after?.serviceId) return;
    if (before) this.count(before, -1);
    if (after) this.count(after, 1);
  }

  private count(value: AffinityPreference, delta: number): void {
    let services = this.counts.get(value.serviceId);
    if (!services) {
      services = new Map();
      this.counts.set(value.serviceId, services);
    }
    const n = (services.get(value.instanceId) ?? 0) + delta;
    if (n <= 0) services.delete(value.instanceId);
    else services.set(value.instanceId, n);
    this.held += delta;
  }

  private scheduleFlush(delayMs: number): void {
    if (this.closed || this.flushing || this.flushTimer !== undefined) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush();
    }, delayMs);
    this.flushTimer.unref();
  }

  /** Writes every queued preference that is still the newest and every release, concurrently. */
  private async flush(): Promise<void> {
    if (!this.options.connected()) {
      this.scheduleFlush(this.options.retryMs ?? 200);
      return;
    }
    this.flushing = true;
    let failed = false;
    const writes: Promise<void>[] = [];
    for (const [key, local] of this.pending) {
      if (local.revision !== undefined || local.writing) continue;
      // Released, the removal on its way: this value goes out after it, not racing it.
      if (this.releases.has(key)) continue;
      const current = this.store.peek(key);
      if (current !== undefined && current.lastSeenAtMs > local.value.lastSeenAtMs) {
        // Decided again elsewhere while this write waited: the newer value stands.
        const before = local.value;
        this.pending.delete(key);
        this.moved(before, this.effectiveCounted(key));
        continue;
      }
      local.writing = true;
      writes.push(
        this.writer.put(local.value).then(
          (revision) => {
            local.writing = false;
            if (this.pending.get(key) !== local) return;
            if (this.view.lastRevision >= revision) {
              this.pending.delete(key);
              this.moved(local.value, this.effectiveCounted(key));
            } else {
              local.revision = revision;
            }
          },
          (error: Error) => {
            local.writing = false;
            failed = true;
            this.logger.warn(
              { msgId: GatewayLogIds.affinityWriteFailed, err: error },
              'affinity preference not written yet; will retry',
            );
          },
        ),
      );
    }
    for (const [key, release] of this.releases) {
      if (release.writing) continue;
      release.writing = true;
      writes.push(
        this.writer.remove(key).then(
          () => {
            if (this.releases.get(key) === release) this.releases.delete(key);
          },
          (error: Error) => {
            release.writing = false;
            failed = true;
            this.logger.warn(
              { msgId: GatewayLogIds.affinityWriteFailed, err: error },
              'released affinity preference not removed yet; will retry',
            );
          },
        ),
      );
    }
    await Promise.all(writes);
    this.flushing = false;
    // Decisions made during this round go out at once; failed writes after a pause.
    if (this.queued > 0) this.scheduleFlush(failed ? (this.options.retryMs ?? 200) : 0);
  }
}

function lapsed(value: AffinityPreference, now: number): boolean {
  return value.lastSeenAtMs + value.idleSeconds * 1000 <= now;
}
