/** The console's Prometheus metrics (prom-client's default registry, served on /metrics). */
import { Counter } from 'prom-client';

export const consoleMetrics = {
  control: new Counter({
    name: 'halyard_console_control_total',
    help: 'Control verbs asked from the console, by verb and outcome (accepted, refused, failed, forbidden)',
    labelNames: ['verb', 'outcome'],
  }),
  controlForbidden: new Counter({
    name: 'halyard_console_control_forbidden_total',
    help: 'Control requests the console refused before sending anything, by reason (off, no_token, forgery)',
    labelNames: ['reason'],
  }),
} as const;
