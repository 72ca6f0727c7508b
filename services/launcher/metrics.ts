/** The launcher's Prometheus metrics (prom-client's default registry, served on /metrics). */
import { Counter, Gauge } from 'prom-client';

export const launcherMetrics = {
  restarts: new Counter({
    name: 'halyard_launcher_restarts_total',
    help: 'Restarts of failed children, by component',
    labelNames: ['component'],
  }),
  transitions: new Counter({
    name: 'halyard_launcher_transitions_total',
    help: 'Lifecycle transitions, by component and kind',
    labelNames: ['component', 'kind'],
  }),
  children: new Gauge({
    name: 'halyard_launcher_children',
    help: 'Supervised instances, by state',
    labelNames: ['state'],
  }),
  leftovers: new Counter({
    name: 'halyard_launcher_leftovers_total',
    help: 'Children found alive from a previous launcher run, by what was done with them',
    labelNames: ['action'],
  }),
} as const;
