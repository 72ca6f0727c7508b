/**
 * Leader leases for extenders that must run as one active copy (a reconciler, a
 * reporter): `bus.lease(name, { ttlMs })` waits until this process holds the lease and
 * hands it a fencing token.
 *
 * A lease is one key of `halyard-leases`, written with compare-and-set on its last
 * revision (which the server enforces on the replicated stream) and a per-message TTL:
 * of many candidates exactly one creates it; its holder renews it every ttl/3 with the
 * revision it last wrote; once renewals stop, readers treat it as free after ttl and the
 * server removes it, so a candidate takes over within ttl + about a second (the
 * server's TTL resolution) of the holder's death.
 *
 * The fencing token is the revision that created the holding: a stream sequence, so
 * unique and greater for every later holder. Whatever the holder writes elsewhere should
 * carry it, so that a store can refuse a write from a holder that has been superseded.
 *
 * "At most one" means: a holder acts only while `lost` is not aborted, and `lost` is
 * aborted when its own deadline passes — ttl after the start of its last successful
 * renewal — which is never later than the moment any candidate may take the lease.
 * During a partition, a holder cut off from the bus majority cannot renew and stops at
 * that deadline, while candidates on the majority side take over only after it; a holder
 * whose clock or event loop stalls past its deadline can still act late, which is what
 * the fencing token is for. Candidates judge expiry by their own clocks, as every reader
 * of the bus's buckets does: hosts' clocks must agree to well within ttl.
 *
 * A renewal held up by a bus election may land after its holder gave up: the lease then
 * stays unheld, never doubly held, until it lapses one ttl later.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { leaseLapsesAt } from './buckets.js';
import { type Logger, LogIds } from './log.js';
import { assertToken } from './names.js';
import type { Lease } from './schemas.js';
import { KeyChangedError, KeyExistsError, type KvStore } from './store.js';

export interface LeaseOptions {
  /** How long the lease outlives its holder's last renewal; ≥ 1000 ms (the server's TTL resolution). */
  readonly ttlMs: number;
  /** Names the holder in the bucket, for operators; default `<hostname>/<pid>`. */
  readonly holder?: string;
  /** Stops waiting: the promise rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

export interface LeaseHold {
  readonly name: string;
  /** The fencing token: the revision that created this holding; every later holder's is greater. */
  readonly token: number;
  /** Aborted once this process may no longer act as the holder (see the module comment). */
  readonly lost: AbortSignal;
  /**
   * Whether the holder may act now: `lost` not aborted and its deadline not passed,
   * checked against the clock, so a timer that fires late changes nothing. Once false,
   * never true again: acquire anew.
   */
  isHeld(): boolean;
  /** Gives the lease up at once: candidates may take it without waiting for ttl. */
  release(): Promise<void>;
}

/** The longest wait between two looks at a lease held by someone else: how soon a release is seen. */
const POLL_MS = 250;

export async function acquireLease(
  store: KvStore<Lease>,
  name: string,
  options: LeaseOptions,
  logger: Logger,
): Promise<LeaseHold> {
  assertToken('lease name', name);
  const { ttlMs, signal } = options;
  if (!Number.isInteger(ttlMs) || ttlMs < 1000) {
    throw new RangeError(`lease ${name}: ttlMs must be an integer ≥ 1000, not ${ttlMs}`);
  }
  // A suffix of its own, so two holders given the same text are still told apart.
  const holder = `${options.holder ?? `${hostname()}/${process.pid}`} ${randomUUID().slice(0, 8)}`;
  for (;;) {
    signal?.throwIfAborted();
    const current = await store.get(name);
    const now = Date.now();
    const expiresAt = current && leaseLapsesAt(current.value);
    if (expiresAt !== undefined && expiresAt > now) {
      await sleep(Math.min(POLL_MS, expiresAt - now + 1), undefined, { signal });
      continue;
    }
    const value = { name, holder, acquiredAtMs: now, renewedAtMs: now, ttlMs };
    try {
      // Over a lapsed value whose removal the server has not made yet: CAS on its revision.
      const token = await (current ? store.update(value, current.revision) : store.create(value));
      logger.info({ msgId: LogIds.leaseAcquired, lease: name, holder, token }, 'lease acquired');
      return new Holding(store, value, token, logger);
    } catch (error) {
      // Another candidate won this round.
      if (!(error instanceof KeyExistsError || error instanceof KeyChangedError)) throw error;
    }
  }
}

class Holding implements LeaseHold {
  readonly name: string;
  private readonly controller = new AbortController();
  private revision: number;
  private deadlineAtMs = 0;
  private renewal: NodeJS.Timeout | undefined;
  private deadline: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: KvStore<Lease>,
    private readonly value: Lease,
    readonly token: number,
    private readonly logger: Logger,
  ) {
    this.name = value.name;
    this.revision = token;
    this.extend(value.renewedAtMs);
  }

  get lost(): AbortSignal {
    return this.controller.signal;
  }

  isHeld(): boolean {
    return !this.lost.aborted && Date.now() < this.deadlineAtMs;
  }

  async release(): Promise<void> {
    if (this.lost.aborted) return;
    this.lose('released');
    // A value already lapsed for every reader, written only if no one took over meanwhile;
    // with the bus away, the lease lapses by itself within ttl, so waiting longer is pointless.
    const lapse = this.store.update({ ...this.value, renewedAtMs: 0 }, this.revision);
    await Promise.race([lapse.catch(() => {}), sleep(this.value.ttlMs, undefined, { ref: false })]);
  }

  /** The lease is ours until ttl after `renewedAtMs`, the time its last write was sent. */
  private extend(renewedAtMs: number): void {
    clearTimeout(this.deadline);
    this.deadlineAtMs = renewedAtMs + this.value.ttlMs;
    this.deadline = setTimeout(
      () => this.lose('deadline passed without a renewal'),
      this.deadlineAtMs - Date.now(),
    );
    this.renewal = setTimeout(() => void this.renew(), this.value.ttlMs / 3);
  }

  private async renew(): Promise<void> {
    const renewedAtMs = Date.now();
    try {
      const revision = await this.store.update({ ...this.value, renewedAtMs }, this.revision);
      if (this.lost.aborted) return;
      // Too late: the holder has already been told it may not act, which is final.
      if (!this.isHeld()) return this.lose('deadline passed without a renewal');
      this.revision = revision;
      this.extend(renewedAtMs);
    } catch (error) {
      this.lose(
        error instanceof KeyChangedError ? 'taken by another holder' : String(error),
        error,
      );
    }
  }

  private lose(reason: string, cause?: unknown): void {
    if (this.lost.aborted) return;
    clearTimeout(this.renewal);
    clearTimeout(this.deadline);
    if (reason !== 'released') {
      this.logger.warn(
        { msgId: LogIds.leaseLost, lease: this.name, token: this.token, reason, err: cause },
        'lease lost',
      );
    }
    this.controller.abort(
      new Error(
        `lease ${this.name} (token ${this.token}) lost: ${reason}`,
        cause === undefined ? undefined : { cause },
      ),
    );
  }
}
