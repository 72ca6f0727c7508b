/**
 * Rendezvous (highest-random-weight) hashing: every replica computes the same owner
 * for a key from the same set of live replicas, with no coordination, and when a
 * replica leaves only its own keys move.
 */
import { createHash } from 'node:crypto';

/** The weight of `replica` for `key`: the highest weight owns the key. */
function weight(replica: string, key: string): bigint {
  return createHash('sha256').update(replica).update('\0').update(key).digest().readBigUInt64BE(0);
}

export function ownerOf(key: string, replicas: Iterable<string>): string | undefined {
  return ownerAmong(key, replicas, (replica) => replica);
}

/** The candidate whose id owns `key`, for callers holding objects rather than ids. */
export function ownerAmong<T>(
  key: string,
  candidates: Iterable<T>,
  idOf: (candidate: T) => string,
): T | undefined {
  let best: T | undefined;
  let bestId = '';
  let bestWeight = -1n;
  for (const candidate of candidates) {
    const id = idOf(candidate);
    const w = weight(id, key);
    // Ties (astronomically rare) go to the smaller id so every replica agrees.
    if (w > bestWeight || (w === bestWeight && best !== undefined && id < bestId)) {
      best = candidate;
      bestId = id;
      bestWeight = w;
    }
  }
  return best;
}
