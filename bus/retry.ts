/**
 * Retrying writes through a leader election. A stream whose leader was killed answers
 * "no responders" or times out until a follower's election timeout fires (4–9 s in
 * nats-server's RAFT); those writes must wait and go through, never fail the caller.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { JetStreamApiError } from '@nats-io/jetstream';
import {
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
} from '@nats-io/transport-node';

/** JetStream API error: no suitable peers for a stream's placement. */
const NO_SUITABLE_PEERS = 10005;
/** JetStream API error: a message with this id is still being stored (a retry came early). */
const DUPLICATE_IN_PROCESS = 10158;

/** Whether a failed bus call may succeed if tried again later. */
export function isTransient(error: unknown): boolean {
  if (deniedBy(error)) return false;
  if (error instanceof ClosedConnectionError || error instanceof DrainingConnectionError) {
    return false;
  }
  if (error instanceof JetStreamApiError) {
    // 503: JetStream or the stream's group has no quorum right now. 10005 with a peer
    // offline: a replicated stream cannot be placed until a starting node is back.
    return (
      error.status === 503 ||
      error.status === 408 ||
      error.code === DUPLICATE_IN_PROCESS ||
      (error.code === NO_SUITABLE_PEERS && /peer offline/i.test(error.message))
    );
  }
  if (
    error instanceof NoRespondersError ||
    error instanceof TimeoutError ||
    error instanceof RequestError ||
    error instanceof ConnectionError ||
    /jetstream not enabled/i.test((error as Error | undefined)?.message ?? '')
  ) {
    return true;
  }
  const cause = (error as { cause?: unknown } | undefined)?.cause;
  return cause !== undefined && cause !== error && isTransient(cause);
}

/** A refusal by the bus's permissions, however wrapped: trying again cannot help. */
export function deniedBy(error: unknown, depth = 0): boolean {
  if (error instanceof PermissionViolationError) return true;
  const cause = (error as { cause?: unknown } | undefined)?.cause;
  return depth < 5 && cause !== undefined && cause !== error && deniedBy(cause, depth + 1);
}

interface RetryOptions {
  /** Stops retrying (the pending call rejects with the abort reason). */
  readonly signal?: AbortSignal;
  readonly minDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Called before each wait; for logs and metrics. */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/** Runs `op` until it succeeds or fails with a non-transient error, backing off with jitter. */
export async function retryTransient<T>(
  op: () => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const { signal, minDelayMs = 50, maxDelayMs = 2000, onRetry } = options;
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await op();
    } catch (error) {
      if (!isTransient(error)) throw error;
      const ceiling = Math.min(maxDelayMs, minDelayMs * 2 ** (attempt - 1));
      const delayMs = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
      onRetry?.(error, attempt, delayMs);
      await sleep(delayMs, undefined, { signal }).catch(() => {
        throw signal?.reason;
      });
    }
  }
}
