/**
 * One host's part in the rollout records of the mesh configuration versions (bucket
 * `halyard-rollouts`, one record per version): it reports where it is, and takes its
 * turn to replace instances. Turns go in host id order, one host at a time: a host
 * rolls once every host before it in the record has applied the version and no other
 * host is rolling; the change to ROLLING is a compare-and-set on the record's revision,
 * so two hosts that both see the way free cannot both take it. Turns begin a moment
 * (`joinWindowMs`) after the first host joined, so that every host that follows the
 * configuration has joined by then: one that joins later (it was down, or busy) takes
 * its turn after those before it in id order that are still to roll.
 */
import {
  type HostRollout,
  KeyChangedError,
  KeyExistsError,
  Keys,
  type Revisioned,
  type Rollout,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';

export const RolloutState = halyard.launcher.v1.Rollout.State;
export const HostState = halyard.launcher.v1.HostRollout.State;
export type HostStateName = Exclude<keyof typeof HostState, 'STATE_UNSPECIFIED'>;

/** What a rollout board needs of the bucket (KvStore<Rollout> is one). */
export interface RolloutRecords {
  get(key: string): Promise<Revisioned<Rollout> | undefined>;
  create(value: Rollout): Promise<number>;
  update(value: Rollout, revision: number): Promise<number>;
}

/** The outcome of waiting for a turn. */
export type Turn =
  | { readonly go: true }
  | { readonly go: false; readonly why: 'aborted' | 'halted' | 'waiting'; readonly detail: string };

/**
 * Applies `change` to the record of `version` (a fresh one when there is none) with
 * compare-and-set, again on the newest record whenever another writer came first.
 * `change` returns undefined to leave the record as it is.
 */
export async function changeRollout(
  records: RolloutRecords,
  version: number,
  change: (rollout: Rollout) => Rollout | undefined,
): Promise<Rollout> {
  for (;;) {
    const current = await records.get(Keys.rollout(version));
    const base = current?.value ?? {
      version,
      state: RolloutState.ROLLING,
      reason: '',
      hosts: [],
      updatedAtMs: Date.now(),
      createdAtMs: Date.now(),
    };
    const next = change(base);
    if (!next) return base;
    const value = { ...next, updatedAtMs: Date.now() };
    try {
      if (current) await records.update(value, current.revision);
      else await records.create(value);
      return value;
    } catch (error) {
      if (!(error instanceof KeyChangedError || error instanceof KeyExistsError)) throw error;
    }
  }
}

/** How long after a rollout's first host joined the turns begin. */
const JOIN_WINDOW_MS = 2000;

export class RolloutBoard {
  constructor(
    private readonly records: RolloutRecords,
    readonly hostId: string,
    private readonly launcherId: string,
    private readonly joinWindowMs = JOIN_WINDOW_MS,
  ) {}

  /** This host's entry in the record of `version`, as last written. */
  async entry(version: number): Promise<{ rollout: Rollout; host: HostRollout } | undefined> {
    const rollout = (await this.records.get(Keys.rollout(version)))?.value;
    const host = rollout?.hosts.find((h) => h.hostId === this.hostId);
    return rollout && host ? { rollout, host } : undefined;
  }

  /** Writes this host's state for `version` (and, when it fails, halts the rollout there). */
  async report(version: number, state: HostStateName, reason: string): Promise<void> {
    await changeRollout(this.records, version, (rollout) => {
      const next = this.withEntry(rollout, state, reason);
      if (state !== 'FAILED' || rollout.state === RolloutState.ABORTED) return next;
      return { ...next, state: RolloutState.HALTED, reason: `on host ${this.hostId}: ${reason}` };
    });
  }

  /**
   * Takes this host's turn to roll when the way is free; otherwise writes that it waits
   * (and for what) and says why it may not go.
   */
  async takeTurn(version: number): Promise<Turn> {
    let turn: Turn = { go: true };
    await changeRollout(this.records, version, (rollout) => {
      turn = this.turnIn(rollout);
      const mine = rollout.hosts.find((h) => h.hostId === this.hostId);
      if (turn.go) return this.withEntry(rollout, 'ROLLING', 'starting');
      const state = turn.why === 'aborted' ? 'SKIPPED' : 'WAITING';
      if (mine?.state === HostState[state] && mine.reason === turn.detail) return undefined;
      return this.withEntry(rollout, state, turn.detail);
    });
    return turn;
  }

  /** Whether an operator aborted the rollout of `version`. */
  async aborted(version: number): Promise<boolean> {
    const rollout = (await this.records.get(Keys.rollout(version)))?.value;
    return rollout?.state === RolloutState.ABORTED;
  }

  private turnIn(rollout: Rollout): Turn {
    if (rollout.state === RolloutState.ABORTED) {
      return {
        go: false,
        why: 'aborted',
        detail: `rollout aborted${rollout.reason ? ` (${rollout.reason})` : ''}`,
      };
    }
    if (rollout.state === RolloutState.HALTED) {
      return { go: false, why: 'halted', detail: `rollout halted ${rollout.reason}` };
    }
    if (Date.now() < rollout.createdAtMs + this.joinWindowMs) {
      return { go: false, why: 'waiting', detail: 'waiting for the hosts to join' };
    }
    const others = rollout.hosts.filter((h) => h.hostId !== this.hostId);
    const rolling = others.find((h) => h.state === HostState.ROLLING);
    if (rolling) return { go: false, why: 'waiting', detail: `host ${rolling.hostId} is rolling` };
    const before = others.find((h) => h.hostId < this.hostId && h.state !== HostState.APPLIED);
    if (before) return { go: false, why: 'waiting', detail: `after host ${before.hostId}` };
    return { go: true };
  }

  /** The record with this host's entry set, hosts in id order (the order of their turns). */
  private withEntry(rollout: Rollout, state: HostStateName, reason: string): Rollout {
    const entry: HostRollout = {
      hostId: this.hostId,
      state: HostState[state],
      reason,
      launcherId: this.launcherId,
      updatedAtMs: Date.now(),
    };
    const hosts = [...rollout.hosts.filter((h) => h.hostId !== this.hostId), entry].sort((a, b) =>
      a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0,
    );
    return { ...rollout, hosts };
  }
}
