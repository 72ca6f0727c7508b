/**
 * The gateway's Prometheus metrics, on prom-client's default registry (the admin
 * endpoint's /metrics). Per-call label look-ups are prepared once per method (see
 * `MethodStats`), so the hot path touches prepared children only. A gateway of several
 * workers serves their sum (workers.ts); a metric that is not a sum says how the
 * workers' values combine (`aggregator`).
 */
import { Counter, Gauge, Histogram, type Metric } from 'prom-client';
import { StatusNames } from './grpc-status.js';

/**
 * Sticky hits happen on every call: balancers count them in plain numbers (a labelled
 * counter hashes its labels on each increment) and the counter reads them when scraped.
 */
const affinityHitCounts = new Map<string, { n: number }>();

export function affinityHitCount(service: string): { n: number } {
  let hits = affinityHitCounts.get(service);
  if (hits === undefined) {
    hits = { n: 0 };
    affinityHitCounts.set(service, hits);
  }
  return hits;
}

export const gatewayMetrics = {
  requests: new Counter({
    name: 'halyard_gateway_requests_total',
    help: 'Calls proxied or answered by the gateway, by gRPC service, method and final status',
    labelNames: ['service', 'method', 'code'],
  }),
  duration: new Histogram({
    name: 'halyard_gateway_request_duration_seconds',
    help: 'Time from a call arriving to its last frame, by gRPC service and method',
    labelNames: ['service', 'method'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  }),
  retries: new Counter({
    name: 'halyard_gateway_retries_total',
    help: 'Attempts retried on another instance because the previous one failed before answering',
    labelNames: ['service', 'reason'],
  }),
  retriesDenied: new Counter({
    name: 'halyard_gateway_retries_denied_total',
    help: 'Retries not made, by why: the retry budget was spent, or no other instance or time was left',
    labelNames: ['service', 'reason'],
  }),
  ejections: new Counter({
    name: 'halyard_gateway_ejections_total',
    help: 'Instances ejected after consecutive connection-level failures',
    labelNames: ['service'],
  }),
  returns: new Counter({
    name: 'halyard_gateway_ejection_returns_total',
    help: 'Ejected instances given calls again after their ejection period',
    labelNames: ['service'],
  }),
  upstreamConnects: new Counter({
    name: 'halyard_gateway_upstream_connects_total',
    help: 'HTTP/2 connections to instances, by result (connected, failed)',
    labelNames: ['result'],
  }),
  rejected: new Counter({
    name: 'halyard_gateway_rejected_requests_total',
    help: 'Requests and connections refused before routing (not gRPC, malformed, over a limit, a service not routed to clients), by reason',
    labelNames: ['reason'],
  }),
  idleConnectionsClosed: new Counter({
    name: 'halyard_gateway_idle_connections_closed_total',
    help: 'Client connections closed (GOAWAY) after limits.idleConnectionSeconds without a call',
  }),
  affinityHits: new Counter({
    name: 'halyard_gateway_affinity_hits_total',
    help: 'Calls routed to the instance of a stored sticky preference (user or header policy)',
    labelNames: ['service'],
    collect() {
      this.reset();
      for (const [service, hits] of affinityHitCounts) this.inc({ service }, hits.n);
    },
  }),
  affinityAssignments: new Counter({
    name: 'halyard_gateway_affinity_assignments_total',
    help: 'New sticky preferences decided by this gateway (user without a live preference)',
    labelNames: ['service'],
  }),
  affinityFailovers: new Counter({
    name: 'halyard_gateway_affinity_failovers_total',
    help: 'Users moved off an instance that was down (lb.whenDown=failover)',
    labelNames: ['service'],
  }),
  affinityReleases: new Counter({
    name: 'halyard_gateway_affinity_releases_total',
    help: 'x-halyard-affinity headers and trailers from instances, by outcome (released; ignored: no-user, not-user-policy, unknown-value)',
    labelNames: ['service', 'outcome'],
  }),
  affinityRejections: new Counter({
    name: 'halyard_gateway_affinity_rejections_total',
    help: 'Calls refused by a sticky policy, by reason (full, down, unknown-instance, unauthenticated)',
    labelNames: ['service', 'reason'],
  }),
} as const;

/** Gauges read from live state when scraped, so the hot path never updates them. */
export function registerGauges(read: {
  activeCalls: () => number;
  upstreamSessions: () => number;
  ejectedInstances: () => number;
  affinityPreferences: () => number;
}): void {
  const gauges: Array<[string, string, () => number, Aggregator]> = [
    [
      'halyard_gateway_active_calls',
      'Calls in flight through the gateway',
      read.activeCalls,
      'sum',
    ],
    [
      'halyard_gateway_upstream_sessions',
      'Connected HTTP/2 sessions to instances',
      read.upstreamSessions,
      'sum',
    ],
    // Each worker ejects on its own failures; the same instance is counted once.
    [
      'halyard_gateway_ejected_instances',
      'Instances currently ejected (with several workers: by the worker that ejected the most)',
      read.ejectedInstances,
      'max',
    ],
    // Every worker holds the same bucket.
    [
      'halyard_gateway_affinity_preferences',
      'Sticky preferences held in memory (the shared bucket plus unwritten local decisions; with several workers: the most any worker holds)',
      read.affinityPreferences,
      'max',
    ],
  ];
  for (const [name, help, value, aggregator] of gauges) {
    // One gateway per process in production; tests start several, the latest one reports.
    const existing = registerGaugesState.get(name);
    if (existing) {
      existing.read = value;
      continue;
    }
    const state = { read: value };
    registerGaugesState.set(name, state);
    new Gauge({
      name,
      help,
      aggregator,
      collect() {
        this.set(state.read());
      },
    });
  }
}
const registerGaugesState = new Map<string, { read: () => number }>();

type Aggregator = NonNullable<ConstructorParameters<typeof Gauge>[0]['aggregator']>;

/**
 * In a worker: its calls so far, labelled with its number, so that the summed metrics
 * still show how calls spread over the workers. Read from the calls counter when
 * scraped: nothing more on the hot path.
 */
export function registerWorkerCalls(worker: number): Metric {
  return new Counter({
    name: 'halyard_gateway_worker_calls_total',
    help: 'Calls proxied or answered by each worker of the gateway, by worker number',
    labelNames: ['worker'],
    async collect() {
      const { values } = await gatewayMetrics.requests.get();
      this.reset();
      this.inc(
        { worker: String(worker) },
        values.reduce((sum, v) => sum + v.value, 0),
      );
    },
  });
}

/** Prepared metric children of one method, so a call does no label hashing. */
export interface MethodStats {
  readonly byCode: Array<Counter.Internal | undefined>;
  readonly duration: Histogram.Internal<string>;
  readonly service: string;
  readonly method: string;
}

/** Distinct methods per gRPC service given their own metric labels (clients choose paths). */
const MAX_METHODS_PER_SERVICE = 200;

/** `MethodStats` by request path, at most `MAX_METHODS_PER_SERVICE` per service. */
export class MethodStatsCache {
  /** Calls refused before their service was known (not ready, unknown service). */
  readonly unknown = statsFor('(unknown)', '(unknown)');
  private readonly byPath = new Map<string, MethodStats>();
  private readonly perService = new Map<string, number>();

  get(path: string): MethodStats | undefined {
    return this.byPath.get(path);
  }

  /** Prepares the stats of `path` (`/<service>/<method>`); beyond the bound, `(other)`. */
  add(path: string, service: string, method: string): MethodStats {
    const count = this.perService.get(service) ?? 0;
    if (count >= MAX_METHODS_PER_SERVICE) return statsFor(service, '(other)');
    const stats = statsFor(service, method);
    this.byPath.set(path, stats);
    this.perService.set(service, count + 1);
    return stats;
  }
}

function statsFor(service: string, method: string): MethodStats {
  return {
    byCode: [],
    duration: gatewayMetrics.duration.labels(service, method),
    service,
    method,
  };
}

/** Counts a finished call by its final status, and its duration. */
export function countCall(stats: MethodStats, code: number, seconds: number): void {
  let counter = stats.byCode[code];
  if (counter === undefined) {
    counter = gatewayMetrics.requests.labels(
      stats.service,
      stats.method,
      StatusNames[code] ?? String(code),
    );
    stats.byCode[code] = counter;
  }
  counter.inc();
  stats.duration.observe(seconds);
}
