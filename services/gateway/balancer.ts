/**
 * Balancer policies: which instance of a route gets the next attempt. One small
 * interface (as grpc-js' load-balancer-*.ts) so that sticky policies slot in per
 * service without the proxy knowing which one runs.
 */
import type { Endpoint } from './endpoint.js';

export interface Balancer {
  /**
   * An available endpoint (UP, not ejected) that is not in `tried`, or undefined when
   * there is none. Called once per attempt, on the hot path: no allocation.
   */
  pick(
    endpoints: readonly Endpoint[],
    tried: readonly Endpoint[] | undefined,
  ): Endpoint | undefined;
}

/** Each available endpoint in turn; skipped ones do not shift the rotation of the others. */
export class RoundRobin implements Balancer {
  private next = 0;

  pick(
    endpoints: readonly Endpoint[],
    tried: readonly Endpoint[] | undefined,
  ): Endpoint | undefined {
    const n = endpoints.length;
    for (let i = 0; i < n; i++) {
      const index = (this.next + i) % n;
      const endpoint = endpoints[index]!;
      if (endpoint.available && !tried?.includes(endpoint)) {
        this.next = index + 1;
        return endpoint;
      }
    }
    return undefined;
  }
}
