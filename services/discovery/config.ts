/**
 * A discovery replica's settings: a YAML file, overridden by environment variables,
 * overridden by flags (see services/common/component-config.ts); validated as a whole
 * by a strict schema so an error names the setting.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { id } from '../../bus/index.js';
import { busFlags, busSettings } from '../common/bus-settings.js';
import {
  type ComponentSpec,
  loadComponentConfig,
  type Setting,
} from '../common/component-config.js';
import { serverTlsSettings } from '../common/server-tls.js';
import { accessSettings } from './access.js';
import { addressSettings } from './addresses.js';
import type { ReplicaOptions } from './replica.js';

const positive = z.number().int().positive();

export const discoveryConfigSchema = z.strictObject({
  bus: busSettings,
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
  /** How lapsed leases are decided on: see lease-expiry.ts. */
  expiry: z
    .strictObject({ checkIntervalMs: positive, settleMs: z.number().int().nonnegative() })
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
  /** TLS on the gRPC port; with `clientCaFile`, client certificates identify callers. */
  tls: serverTlsSettings.optional(),
  /** Service tokens (by SHA-256) and what each identity may do: see access.ts. */
  ...accessSettings,
  /** Where instances may be registered: see addresses.ts. */
  ...addressSettings,
});

export type DiscoveryConfig = z.infer<typeof discoveryConfigSchema>;

const settings: readonly Setting[] = [
  ...busFlags,
  {
    flag: '--replica-id <id>',
    env: 'HALYARD_REPLICA_ID',
    path: 'replicaId',
    description: 'this replica’s id',
  },
  {
    flag: '--grpc-listen <host:port>',
    env: 'HALYARD_GRPC_LISTEN',
    path: 'grpcListen',
    description: 'gRPC listen address',
  },
  {
    flag: '--admin-port <port>',
    env: 'HALYARD_ADMIN_PORT',
    path: 'adminPort',
    description: 'admin HTTP port, 0 for any',
    parse: Number,
  },
  {
    flag: '--static-file <file>',
    env: 'HALYARD_STATIC_FILE',
    path: 'staticFile',
    description: 'YAML static definitions',
  },
];

const spec: ComponentSpec<typeof discoveryConfigSchema> = {
  name: 'halyard-discovery',
  description: 'Halyard discovery replica: the Registry gRPC API on the bus',
  schema: discoveryConfigSchema,
  configEnv: 'HALYARD_DISCOVERY_CONFIG',
  settings,
};

/** A replica's config from a file (`--config`), the environment and `argv`. */
export async function loadDiscoveryConfig(argv: readonly string[]): Promise<DiscoveryConfig> {
  return (await loadComponentConfig(spec, argv)).config;
}

export function replicaOptions(config: DiscoveryConfig): Omit<ReplicaOptions, 'logger'> {
  return {
    replicaId: config.replicaId,
    bus: config.bus,
    grpcListen: config.grpcListen,
    advertiseAddress: config.advertiseAddress,
    adminHost: config.adminHost,
    adminPort: config.adminPort,
    staticFile: config.staticFile,
    leases: config.leases,
    replicaLeaseSeconds: config.replicaLeaseSeconds,
    expiryCheckIntervalMs: config.expiry.checkIntervalMs,
    expirySettleMs: config.expiry.settleMs,
    selfPreservation: config.selfPreservation,
    health: config.health,
    tls: config.tls,
    access: { tokens: config.tokens, grants: config.grants },
    addresses: {
      allowedNetworks: config.allowedNetworks,
      allowedHostnames: config.allowedHostnames,
    },
  };
}
