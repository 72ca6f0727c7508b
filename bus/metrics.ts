/**
 * The bus layer's Prometheus metrics, on prom-client's default registry so that
 * every component's `/metrics` shows them without wiring.
 */
import { Counter, Gauge } from 'prom-client';

function counter(name: string, help: string, labelNames: string[]) {
  return new Counter({ name, help, labelNames });
}

export const busMetrics = {
  invalidMessages: counter(
    'halyard_bus_invalid_messages_total',
    'Bus messages skipped because they did not decode or validate',
    ['source'],
  ),
  publishRetries: counter(
    'halyard_bus_publish_retries_total',
    'Bus writes retried after a transient failure (no leader, timeout, disconnected)',
    ['target'],
  ),
  eventsDropped: counter(
    'halyard_bus_events_dropped_total',
    'Events discarded because the publish queue was full while the bus was away',
    [],
  ),
  connectionEvents: counter(
    'halyard_bus_connection_events_total',
    'NATS connection status changes',
    ['type'],
  ),
  deadLettered: counter(
    'halyard_bus_dead_lettered_total',
    'Messages a durable subscriber gave up on and moved to the dead-letter stream',
    ['consumer'],
  ),
  viewEntries: new Gauge({
    name: 'halyard_bus_view_entries',
    help: 'Entries held by local views of buckets',
    labelNames: ['bucket'],
  }),
} as const;
