/**
 * The bus settings every component shares: YAML `bus: { servers: [...] }`, the
 * environment variable HALYARD_NATS and the flag `--nats`, turned into the options of
 * `Bus.connect`. A new bus setting (a CA file, a client certificate and key, a
 * credentials file) is added here and nowhere else: a field of `busSettings`, a row
 * of `busFlags`, its place in `busOptions`.
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { BusOptions } from '../../bus/index.js';
import { list, type Setting } from './component-config.js';

const url = z.string().min(1);

export const busSettings = z
  .strictObject({
    /** NATS URLs; any one is enough to find the cluster. A single URL may stand alone. */
    servers: z
      .union([url.transform((server) => [server]), z.array(url).min(1, 'name a NATS server')])
      .default(['nats://127.0.0.1:4222']),
    /** Stream and bucket replicas; by default 3 when the server is in a cluster, else 1. */
    replicas: z.number().int().min(1).max(5).optional(),
  })
  .prefault({});

export type BusSettings = z.infer<typeof busSettings>;
export type BusSettingsInput = z.input<typeof busSettings>;

export const busFlags: readonly Setting[] = [
  {
    flag: '--nats <urls>',
    env: 'HALYARD_NATS',
    path: 'bus.servers',
    description: 'comma-separated NATS URLs',
    parse: list,
  },
];

/** What `Bus.connect` needs; `name` is the connection's name in the server's monitoring. */
export function busOptions(settings: BusSettings, name: string, logger?: Logger): BusOptions {
  return {
    servers: settings.servers,
    name,
    ...(logger ? { logger } : {}),
    ...(settings.replicas ? { replicas: settings.replicas } : {}),
  };
}
