/**
 * The affinity bucket held compactly: a million users must fit a gateway's memory.
 * Per preference, one map entry (bucket key → slot) and a few typed-array cells;
 * service, instance and gateway ids are interned (few distinct values). A value
 * object is built only when asked for (one small allocation per look-up).
 *
 * Lapse is applied by readers (`get` ignores lapsed values) and `expire()` moves lapsed
 * slots out of the per-instance counts; the slot itself is freed when the server's
 * removal of the value reaches the view (`delete`).
 */
import { type AffinityPreference, Keys } from '../../bus/index.js';

const INITIAL_SLOTS = 1024;

export class CompactPreferences {
  private readonly index = new Map<string, number>();
  private keys: Array<string | undefined> = [];
  private service = new Uint32Array(INITIAL_SLOTS);
  private instance = new Uint32Array(INITIAL_SLOTS);
  private gateway = new Uint32Array(INITIAL_SLOTS);
  private idle = new Uint32Array(INITIAL_SLOTS);
  private created = new Float64Array(INITIAL_SLOTS);
  private lastSeen = new Float64Array(INITIAL_SLOTS);
  /** 1 while the slot is live and counted; 0 once lapsed (or free). */
  private counted = new Uint8Array(INITIAL_SLOTS);
  private readonly free: number[] = [];
  private used = 0;
  private readonly names: string[] = [];
  private readonly nameIds = new Map<string, number>();

  get size(): number {
    return this.index.size;
  }

  /** The value under `key`, lapsed or not; undefined if absent. */
  peek(key: string): AffinityPreference | undefined {
    const slot = this.index.get(key);
    return slot === undefined ? undefined : this.valueAt(slot, key);
  }

  /** The live value under `key`; undefined if absent or lapsed. */
  get(key: string, now: number): AffinityPreference | undefined {
    const slot = this.index.get(key);
    if (slot === undefined) return undefined;
    if (this.lastSeen[slot]! + this.idle[slot]! * 1000 <= now) return undefined;
    return this.valueAt(slot, key);
  }

  /** The instance of the live value under `key`, without building the value. */
  liveInstance(key: string, now: number): string | undefined {
    const slot = this.index.get(key);
    if (slot === undefined) return undefined;
    if (this.lastSeen[slot]! + this.idle[slot]! * 1000 <= now) return undefined;
    return this.names[this.instance[slot]!];
  }

  /** When the live value under `key` was last seen (0 if absent), without building it. */
  lastSeenOf(key: string): number {
    const slot = this.index.get(key);
    return slot === undefined ? 0 : this.lastSeen[slot]!;
  }

  /** The instance a live, counted value names; undefined if absent or lapsed. */
  countedInstance(key: string): string | undefined {
    const slot = this.index.get(key);
    return slot !== undefined && this.counted[slot] === 1
      ? this.names[this.instance[slot]!]
      : undefined;
  }

  set(key: string, value: AffinityPreference, now: number): void {
    let slot = this.index.get(key);
    if (slot === undefined) {
      slot = this.free.pop() ?? this.grow();
      // A key cut from a message subject keeps the whole subject alive: hold a copy.
      const own = Buffer.from(key, 'latin1').toString('latin1');
      this.index.set(own, slot);
      this.keys[slot] = own;
    }
    this.service[slot] = this.nameId(value.serviceId);
    this.instance[slot] = this.nameId(value.instanceId);
    this.gateway[slot] = this.nameId(value.gatewayId);
    this.idle[slot] = value.idleSeconds;
    this.created[slot] = value.createdAtMs;
    this.lastSeen[slot] = value.lastSeenAtMs;
    this.counted[slot] = value.lastSeenAtMs + value.idleSeconds * 1000 > now ? 1 : 0;
  }

  delete(key: string): void {
    const slot = this.index.get(key);
    if (slot === undefined) return;
    this.index.delete(key);
    this.keys[slot] = undefined;
    this.counted[slot] = 0;
    this.free.push(slot);
  }

  /** Marks newly lapsed values as no longer counted; calls `lapsed` for each. */
  expire(now: number, lapsed: (key: string, value: AffinityPreference) => void): void {
    for (let slot = 0; slot < this.used; slot++) {
      if (this.counted[slot] !== 1) continue;
      if (this.lastSeen[slot]! + this.idle[slot]! * 1000 > now) continue;
      this.counted[slot] = 0;
      const key = this.keys[slot]!;
      lapsed(key, this.valueAt(slot, key));
    }
  }

  /** Live (not lapsed) values. */
  *entries(now = Date.now()): IterableIterator<[string, AffinityPreference]> {
    for (const [key, slot] of this.index) {
      if (this.lastSeen[slot]! + this.idle[slot]! * 1000 > now)
        yield [key, this.valueAt(slot, key)];
    }
  }

  private valueAt(slot: number, key: string): AffinityPreference {
    return {
      serviceId: this.names[this.service[slot]!]!,
      userKey: Keys.userKeyOf(key),
      instanceId: this.names[this.instance[slot]!]!,
      createdAtMs: this.created[slot]!,
      lastSeenAtMs: this.lastSeen[slot]!,
      idleSeconds: this.idle[slot]!,
      gatewayId: this.names[this.gateway[slot]!]!,
    };
  }

  private nameId(name: string): number {
    let id = this.nameIds.get(name);
    if (id === undefined) {
      id = this.names.length;
      this.names.push(name);
      this.nameIds.set(name, id);
    }
    return id;
  }

  private grow(): number {
    const slot = this.used++;
    if (slot >= this.counted.length) {
      const size = this.counted.length * 2;
      const widen = <A extends Uint32Array | Float64Array | Uint8Array>(
        old: A,
        make: (n: number) => A,
      ) => {
        const next = make(size);
        next.set(old);
        return next;
      };
      this.service = widen(this.service, (n) => new Uint32Array(n));
      this.instance = widen(this.instance, (n) => new Uint32Array(n));
      this.gateway = widen(this.gateway, (n) => new Uint32Array(n));
      this.idle = widen(this.idle, (n) => new Uint32Array(n));
      this.created = widen(this.created, (n) => new Float64Array(n));
      this.lastSeen = widen(this.lastSeen, (n) => new Float64Array(n));
      this.counted = widen(this.counted, (n) => new Uint8Array(n));
    }
    return slot;
  }
}
