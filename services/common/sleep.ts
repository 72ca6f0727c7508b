/** Waiting: the one sleep of the services and tools. */

/**
 * Resolves after `ms`. With a signal, an abort ends the wait at once and rejects with the
 * signal's reason (not a generic AbortError), so a caller can tell why it was stopped.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
