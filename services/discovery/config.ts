/**
 * A discovery replica's settings: a YAML file, overridden by environment variables,
 * overridden by command-line flags; validated as a whole so an error names the setting.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { id } from '../../bus/index.js';
import { loadYamlConfig, validateConfig } from '../common/config.js';
import type { ReplicaOptions } from './replica.js';

const positive = z.number().int().positive();

export const discoveryConfigSchema = z.strictObject({
  nats: z.array(z.string().min(1)).min(1).default(['nats://127.0.0.1:4222']),
  replicaId: id.default(() =>
    hostname()
      .replace(/[^A-Za-z0-9_-]/g, '-')
      .slice(0, 64),
  ),
  grpcListen: z
    .string()
    .regex(/^.+:\d{1,5}$/, 'must be host:port')
    .default('127.0.0.1:7400'),
  advertiseAddress: z.string().optional(),
  adminHost: z.string().default('127.0.0.1'),
  adminPort: z.number().int().min(0).max(65_535).default(7401),
  staticFile: z.string().optional(),
  leases: z
    .strictObject({ defaultSeconds: positive, minSeconds: positive, maxSeconds: positive })
    .partial()
    .default({}),
  replicaLeaseSeconds: positive.optional(),
  sweep: z
    .strictObject({ intervalMs: positive, graceMs: z.number().int().nonnegative() })
    .partial()
    .default({}),
  selfPreservation: z
    .strictObject({ threshold: z.number().gt(0).lt(1), minLapsed: positive, windowMs: positive })
    .partial()
    .default({}),
  health: z
    .strictObject({ intervalMs: positive, timeoutMs: positive, failureThreshold: positive })
    .partial()
    .default({}),
});

export type DiscoveryConfig = z.infer<typeof discoveryConfigSchema>;

export interface Overrides {
  readonly config?: string;
  readonly nats?: string;
  readonly replicaId?: string;
  readonly grpcListen?: string;
  readonly adminPort?: string;
  readonly staticFile?: string;
}

const ENV: Record<keyof Omit<Overrides, 'config'>, string> = {
  nats: 'HALYARD_NATS',
  replicaId: 'HALYARD_REPLICA_ID',
  grpcListen: 'HALYARD_GRPC_LISTEN',
  adminPort: 'HALYARD_ADMIN_PORT',
  staticFile: 'HALYARD_STATIC_FILE',
};

export async function resolveConfig(
  flags: Overrides,
  env: NodeJS.ProcessEnv,
): Promise<DiscoveryConfig> {
  const file = flags.config ?? env.HALYARD_DISCOVERY_CONFIG;
  const base: Record<string, unknown> = file
    ? { ...(await loadYamlConfig(discoveryConfigSchema, file)) }
    : {};
  for (const key of Object.keys(ENV) as Array<keyof typeof ENV>) {
    const value = flags[key] ?? env[ENV[key]];
    if (value === undefined) continue;
    if (key === 'nats') base.nats = value.split(',').map((s) => s.trim());
    else if (key === 'adminPort') base.adminPort = Number(value);
    else base[key] = value;
  }
  return validateConfig(discoveryConfigSchema, base, file ?? 'flags and environment');
}

export function replicaOptions(config: DiscoveryConfig): Omit<ReplicaOptions, 'logger'> {
  return {
    replicaId: config.replicaId,
    natsServers: config.nats,
    grpcListen: config.grpcListen,
    advertiseAddress: config.advertiseAddress,
    adminHost: config.adminHost,
    adminPort: config.adminPort,
    staticFile: config.staticFile,
    leases: config.leases,
    replicaLeaseSeconds: config.replicaLeaseSeconds,
    sweepIntervalMs: config.sweep.intervalMs,
    sweepGraceMs: config.sweep.graceMs,
    selfPreservation: config.selfPreservation,
    health: config.health,
  };
}
