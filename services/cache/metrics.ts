/** The cache service's Prometheus metrics, on prom-client's default registry. */
import { Counter, Gauge } from 'prom-client';

export const cacheMetrics = {
  requests: new Counter({
    name: 'halyard_cache_requests_total',
    help: 'Cache calls answered, by method and gRPC status code name',
    labelNames: ['method', 'code'],
  }),
  rejected: new Counter({
    name: 'halyard_cache_rejected_requests_total',
    help: 'Cache calls refused before anything was written, by reason',
    labelNames: ['reason'],
  }),
  evicted: new Counter({
    name: 'halyard_cache_evicted_total',
    help: 'Records removed to make room or to trim a namespace back to its limit (eviction remove-oldest)',
    labelNames: [],
  }),
  watchers: new Gauge({
    name: 'halyard_cache_watchers',
    help: 'Open Watch streams on this replica',
    labelNames: [],
  }),
} as const;
