/** Discovery's Prometheus metrics, on prom-client's default registry (served at /metrics). */
import { Counter, Gauge } from 'prom-client';

export const discoveryMetrics = {
  requests: new Counter({
    name: 'halyard_discovery_requests_total',
    help: 'Registry calls by method and resulting gRPC status code name',
    labelNames: ['replica', 'method', 'code'],
  }),
  rejected: new Counter({
    name: 'halyard_discovery_rejected_total',
    help: 'Registry calls refused, by method, reason (the gRPC status, lower case: unauthenticated, permission_denied, failed_precondition, invalid_argument, already_exists) and the request field at fault ("" when the refusal is about the caller)',
    labelNames: ['replica', 'method', 'reason', 'field'],
  }),
  expired: new Counter({
    name: 'halyard_discovery_leases_expired_total',
    help: 'Lapsed leases this replica saw the bus remove and reported',
    labelNames: ['replica'],
  }),
  held: new Counter({
    name: 'halyard_discovery_leases_held_total',
    help: 'Lapsed leases this replica wrote back during self-preservation',
    labelNames: ['replica'],
  }),
  selfPreservation: new Gauge({
    name: 'halyard_discovery_self_preservation',
    help: '1 while this replica holds lapsed leases (self-preservation)',
    labelNames: ['replica'],
  }),
  probes: new Counter({
    name: 'halyard_discovery_health_probes_total',
    help: 'grpc.health.v1 probes sent by this replica, by result',
    labelNames: ['replica', 'result'],
  }),
  probed: new Gauge({
    name: 'halyard_discovery_health_owned_instances',
    help: 'Health-checked instances this replica is responsible for probing',
    labelNames: ['replica'],
  }),
  liveReplicas: new Gauge({
    name: 'halyard_discovery_live_replicas',
    help: 'Discovery replicas this replica sees as live',
    labelNames: ['replica'],
  }),
} as const;
