/** The launcher's Prometheus metrics (prom-client's default registry, served on /metrics). */
import { Counter, Gauge } from 'prom-client';

/** Where the children gauge reads the states of supervised instances, at scrape time. */
const stateSources = new Set<() => Iterable<string>>();

/** Counts the states `source` reports in `halyard_launcher_children`; returns the undo. */
export function trackChildren(source: () => Iterable<string>): () => void {
  stateSources.add(source);
  return () => stateSources.delete(source);
}

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
    collect() {
      this.reset();
      for (const source of stateSources) for (const state of source()) this.inc({ state });
    },
  }),
  controlRefused: new Counter({
    name: 'halyard_launcher_control_refused_total',
    help: 'gRPC control calls refused before anything was done, by reason',
    labelNames: ['reason'],
  }),
  leftovers: new Counter({
    name: 'halyard_launcher_leftovers_total',
    help: 'Children found alive from a previous launcher run, by what was done with them',
    labelNames: ['action'],
  }),
} as const;
