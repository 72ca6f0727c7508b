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
import { type AffinityPreference, Codecs, Keys, type MessageOrigin } from '../../bus/index.js';

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

  /**
   * Stores `value` under `key`; returns the value it replaced if that one was counted
   * (live), so callers keep per-instance counts without a second look-up.
   */
  set(key: string, value: AffinityPreference, now: number): AffinityPreference | undefined {
    let slot = this.index.get(key);
    let replaced: AffinityPreference | undefined;
    if (slot !== undefined) {
      if (this.counted[slot] === 1) replaced = this.valueAt(slot, key);
    } else {
      slot = this.free.pop() ?? this.grow();
      const own = ownCopy(key);
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
    return replaced;
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

/** Room for any bucket key: a service id, a dot and a user key. */
const copyBuffer = Buffer.alloc(256);

/**
 * A key cut from a message subject keeps the whole subject alive: a map holding a
 * million of them holds a copy of each instead (through one buffer, as keys are ASCII).
 */
function ownCopy(key: string): string {
  if (key.length > copyBuffer.length) return Buffer.from(key, 'latin1').toString('latin1');
  const length = copyBuffer.write(key, 0, 'latin1');
  return copyBuffer.toString('latin1', 0, length);
}

/**
 * Decodes a stored preference as `Codecs.affinityPreference` does, for a gateway loading
 * the whole bucket: the wire format is read field by field into the one value returned,
 * with the schema's checks (ids, user key, idle period) made on the bytes. Anything this
 * reader does not expect (an unknown field, a negative or huge number, a character no
 * id may hold, a value the schema refuses) goes to the codec, which decides and names
 * what is wrong.
 */
export function decodePreference(bytes: Uint8Array, origin: MessageOrigin): AffinityPreference {
  return readPreference(bytes) ?? Codecs.affinityPreference.decode(bytes, origin);
}

/** Protobuf wire types of the fields of AffinityPreference. */
const VARINT = 0;
const LENGTH_DELIMITED = 2;
/** Varints up to 7 bytes (49 bits) are exact as numbers; longer ones go to the codec. */
const MAX_VARINT_BYTES = 7;
/** The characters of ids and user keys (TOKEN_PATTERN, USER_KEY_PATTERN): A–Z a–z 0–9 _ -. */
const ID_CHAR = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-') {
  ID_CHAR[c.charCodeAt(0)] = 1;
}
const ID_MAX = 64;
const USER_KEY_MIN = 16;
const USER_KEY_MAX = 128;

function readPreference(bytes: Uint8Array): AffinityPreference | undefined {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let serviceId = '';
  let userKey = '';
  let instanceId = '';
  let createdAtMs = 0;
  let lastSeenAtMs = 0;
  let idleSeconds = 0;
  let gatewayId = '';
  let at = 0;
  const end = bytes.length;
  while (at < end) {
    const tag = bytes[at++]!;
    // Every field number here is below 16: its tag is one byte.
    if (tag >= 0x80) return undefined;
    const field = tag >> 3;
    let number = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      if (i === MAX_VARINT_BYTES || at === end) return undefined;
      const byte = bytes[at++]!;
      number += (byte & 0x7f) * scale;
      scale *= 128;
      if (byte < 0x80) break;
    }
    if ((tag & 7) === VARINT) {
      if (field === 4) createdAtMs = number;
      else if (field === 5) lastSeenAtMs = number;
      else if (field === 6 && number <= 0xffffffff) idleSeconds = number;
      else return undefined;
      continue;
    }
    if ((tag & 7) !== LENGTH_DELIMITED || number > end - at) return undefined;
    const from = at;
    at += number;
    for (let i = from; i < at; i++) if (ID_CHAR[bytes[i]!] !== 1) return undefined;
    const value = text.toString('latin1', from, at);
    if (field === 1) serviceId = value;
    else if (field === 2) userKey = value;
    else if (field === 3) instanceId = value;
    else if (field === 7) gatewayId = value;
    else return undefined;
  }
  if (
    serviceId.length === 0 ||
    serviceId.length > ID_MAX ||
    userKey.length < USER_KEY_MIN ||
    userKey.length > USER_KEY_MAX ||
    instanceId.length === 0 ||
    instanceId.length > ID_MAX ||
    gatewayId.length > ID_MAX ||
    idleSeconds < 1
  ) {
    return undefined;
  }
  return { serviceId, userKey, instanceId, createdAtMs, lastSeenAtMs, idleSeconds, gatewayId };
}
