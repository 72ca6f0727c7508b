/**
 * Balancer policies: which instance of a route gets the next attempt. One small
 * interface (as grpc-js' load-balancer-*.ts) so that sticky policies slot in per
 * service without the forwarder knowing which one runs:
 *
 * - round robin (default);
 * - header: the client names an instance in `x-halyard-instance`;
 * - user: the verified caller's user key has a preference shared by every gateway
 *   replica (see affinity.ts); a new one is decided by rendezvous hashing of the user
 *   key over the live instances that have room, so replicas deciding at the same
 *   moment decide the same.
 */
import type { IncomingHttpHeaders } from 'node:http2';
import type { BalancingSettings } from '../common/lb-metadata.js';
import { ownerAmong } from '../common/rendezvous.js';
import type { AffinityTable } from './affinity.js';
import type { Endpoint } from './endpoint.js';
import { INSTANCE_HEADER, Status } from './grpc-status.js';
import { affinityHitCount, gatewayMetrics } from './metrics.js';

/** What a policy may read of the call. */
export interface CallContext {
  readonly headers: IncomingHttpHeaders;
  /** HMAC user key of the verified caller (user policy); undefined: anonymous. */
  readonly userKey: string | undefined;
}

/** A policy's refusal of a call: the status the client gets. */
export class Refusal {
  constructor(
    readonly code: number,
    readonly message: string,
  ) {}
}

/**
 * The outcome of a pick: the endpoint to try, the policy's refusal, or undefined when
 * no endpoint is available. An endpoint is returned as is, so a pick allocates nothing.
 */
export type Pick = Endpoint | Refusal | undefined;

export interface Balancer {
  /**
   * An available endpoint (UP, not ejected) that is not in `tried`, a refusal, or
   * undefined when there is none. Called once per attempt, on the hot path: no
   * allocation for a known choice.
   */
  pick(
    endpoints: readonly Endpoint[],
    tried: readonly Endpoint[] | undefined,
    call?: CallContext,
  ): Pick;
}

/** Each available endpoint in turn; skipped ones do not shift the rotation of the others. */
export class RoundRobin implements Balancer {
  private next = 0;

  /** Never refuses: an endpoint, or undefined when none is available. */
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

function find(endpoints: readonly Endpoint[], instanceId: string): Endpoint | undefined {
  for (const endpoint of endpoints) if (endpoint.id === instanceId) return endpoint;
  return undefined;
}

/** `x-halyard-instance: <instanceId>` picks that instance; without it, round robin. */
export class HeaderBalancer implements Balancer {
  private readonly rotation = new RoundRobin();
  private readonly hits: { n: number };

  constructor(
    private readonly serviceId: string,
    private readonly settings: BalancingSettings,
  ) {
    this.hits = affinityHitCount(serviceId);
  }

  pick(
    endpoints: readonly Endpoint[],
    tried: readonly Endpoint[] | undefined,
    call?: CallContext,
  ): Pick {
    const asked = call?.headers[INSTANCE_HEADER];
    if (typeof asked !== 'string') {
      return this.rotation.pick(endpoints, tried);
    }
    const service = this.serviceId;
    const shown = JSON.stringify(asked.slice(0, 64));
    const endpoint = find(endpoints, asked);
    if (endpoint === undefined) {
      return refuse(
        service,
        'unknown-instance',
        Status.NOT_FOUND,
        `${INSTANCE_HEADER} names ${shown}, which is not an instance of ${service}: use the instance id a response of ${service} returned in ${INSTANCE_HEADER}, or drop the header`,
      );
    }
    if (endpoint.available && tried === undefined) {
      this.hits.n++;
      return endpoint;
    }
    if (this.settings.whenDown === 'strict') {
      const why = tried === undefined ? `is ${endpoint.state}` : 'did not take the call';
      return refuse(
        service,
        'down',
        Status.UNAVAILABLE,
        `instance ${asked} of ${service} named by ${INSTANCE_HEADER} ${why}, and lb.whenDown=strict: retry when it is back, or drop the header`,
      );
    }
    const other = this.rotation.pick(endpoints, tried ?? [endpoint]);
    if (other !== undefined) gatewayMetrics.affinityFailovers.labels(service).inc();
    return other;
  }
}

/** Told when a user moves off a dead instance (to publish AFFINITY_MOVED). */
export type MovedHook = (serviceId: string, userKey: string, from: string, to: string) => void;

/** Sticky by verified user: the shared preference, or a rendezvous decision stored for later. */
export class UserBalancer implements Balancer {
  private readonly rotation = new RoundRobin();
  private readonly hits: { n: number };

  constructor(
    private readonly serviceId: string,
    private readonly settings: BalancingSettings,
    private readonly affinity: AffinityTable,
    private readonly onMoved: MovedHook,
  ) {
    this.hits = affinityHitCount(serviceId);
  }

  pick(
    endpoints: readonly Endpoint[],
    tried: readonly Endpoint[] | undefined,
    call?: CallContext,
  ): Pick {
    const userKey = call?.userKey;
    if (userKey === undefined) return this.rotation.pick(endpoints, tried);
    const service = this.serviceId;
    if (tried !== undefined) {
      // The chosen instance did not take the call (before answering): it is down.
      const failed = tried[tried.length - 1]!;
      if (this.settings.whenDown === 'strict') {
        return refuse(
          service,
          'down',
          Status.UNAVAILABLE,
          `the user's instance ${failed.id} of ${service} did not take the call, and lb.whenDown=strict: retry when it is back or after the preference expires (lb.idleSeconds=${this.settings.idleSeconds})`,
        );
      }
      return this.decide(endpoints, tried, userKey, failed.id);
    }
    const now = this.affinity.now();
    const preferred = this.affinity.instanceOf(service, userKey, now);
    if (preferred === undefined) return this.decide(endpoints, undefined, userKey, undefined);
    const endpoint = find(endpoints, preferred);
    if (endpoint?.available) {
      this.hits.n++;
      this.affinity.touchIfDue(service, userKey, this.settings.idleSeconds, now);
      return endpoint;
    }
    if (this.settings.whenDown === 'strict') {
      const state = endpoint ? endpoint.state : 'not registered';
      return refuse(
        service,
        'down',
        Status.UNAVAILABLE,
        `the user's instance ${preferred} of ${service} is ${state}, and lb.whenDown=strict: retry when it is back or after the preference expires (lb.idleSeconds=${this.settings.idleSeconds})`,
      );
    }
    return this.decide(endpoints, undefined, userKey, preferred);
  }

  /** Rendezvous over the available instances with room; stored for every replica. */
  private decide(
    endpoints: readonly Endpoint[],
    tried: readonly Endpoint[] | undefined,
    userKey: string,
    from: string | undefined,
  ): Pick {
    const service = this.serviceId;
    const live = endpoints.filter(
      (endpoint) => endpoint.available && endpoint.id !== from && !tried?.includes(endpoint),
    );
    if (live.length === 0) return undefined;
    const max = this.settings.maxUsersPerInstance;
    const users = (endpoint: Endpoint) => this.affinity.usersOf(service, endpoint.id);
    const withRoom = max === undefined ? live : live.filter((endpoint) => users(endpoint) < max);
    let best = ownerAmong(userKey, withRoom, (endpoint) => endpoint.id);
    if (best === undefined) {
      if (this.settings.whenFull === 'reject') {
        return refuse(
          service,
          'full',
          Status.RESOURCE_EXHAUSTED,
          `every live instance of ${service} already has its limit of ${max} users (lb.maxUsersPerInstance=${max}); retry later`,
        );
      }
      best = leastLoaded(live, users);
    }
    this.affinity.assign(service, userKey, best.id, this.settings.idleSeconds);
    if (from !== undefined) {
      gatewayMetrics.affinityFailovers.labels(service).inc();
      this.onMoved(service, userKey, from, best.id);
    } else {
      gatewayMetrics.affinityAssignments.labels(service).inc();
    }
    return best;
  }
}

/** The first endpoint with the fewest users. */
function leastLoaded(
  endpoints: readonly Endpoint[],
  users: (endpoint: Endpoint) => number,
): Endpoint {
  let least = endpoints[0]!;
  let fewest = users(least);
  for (const endpoint of endpoints) {
    const n = users(endpoint);
    if (n < fewest) {
      least = endpoint;
      fewest = n;
    }
  }
  return least;
}

function refuse(service: string, reason: string, code: number, message: string): Refusal {
  gatewayMetrics.affinityRejections.labels(service, reason).inc();
  return new Refusal(code, message);
}
