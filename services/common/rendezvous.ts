/**
 * Rendezvous (highest-random-weight) hashing: every replica computes the same owner
 * for a key from the same set of live replicas, with no coordination, and when a
 * replica leaves only its own keys move.
 */
import { createHash } from 'node:crypto';

/** The weight of `replica` for `key`: the highest weight owns the key. */
export function weight(replica: string, key: string): bigint {
  return createHash('sha256').update(replica).update('\0').update(key).digest().readBigUInt64BE(0);
}

export function ownerOf(key: string, replicas: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestWeight = -1n;
  for (const replica of replicas) {
    const w = weight(replica, key);
    // Ties (astronomically rare) go to the smaller id so every replica agrees.
    if (w > bestWeight || (w === bestWeight && best !== undefined && replica < best)) {
      best = replica;
      bestWeight = w;
    }
  }
  return best;
}
