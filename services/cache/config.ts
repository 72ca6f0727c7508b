/**
 * The cache service's configuration: a YAML file, overridden by environment variables,
 * overridden by flags (see services/common/component-config.ts), validated here by a
 * strict schema. Service tokens are stored only as SHA-256 digests (hex) with the
 * namespace they stand for: the config file never holds a token.
 *
 * ```yaml
 * id: cache-1
 * hostId: host-a             # where it runs (its launcher sets HALYARD_HOST)
 * bus: { servers: [nats://10.0.0.1:4222, nats://10.0.0.2:4222] }
 * grpc: { host: 0.0.0.0, port: 7470 }
 * admin: { host: 0.0.0.0, port: 7471 }
 * tls:                       # optional; without it the port is plaintext (tokens only)
 *   certFile: /etc/halyard/cache.crt
 *   keyFile: /etc/halyard/cache.key
 *   clientCaFile: /etc/halyard/clients-ca.crt   # verified client certificates: namespace = subject CN
 *   requireClientCert: false                     # true: every caller needs a certificate
 * tokens:
 *   - { sha256: 9f86d08…, namespace: billing }
 * limits: { maxKeyBytes: 1024, maxValueBytes: 1048576 }
 * defaults: { maxRecords: 100000, eviction: reject, ttlSeconds: 0 }
 * namespaces:
 *   sessions: { maxRecords: 50000, eviction: remove-oldest, ttlSeconds: 28800 }
 * trim: { intervalMs: 1000 }  # how often remove-oldest namespaces are trimmed back to maxRecords
 * discovery:                 # optional: register as service halyard-cache (never routed by gateways)
 *   addresses: [10.0.0.1:7400, 10.0.0.2:7400]
 *   advertise: 10.0.0.3:7470 # what the registry says (default grpc host:port)
 *   tokenFile: /etc/halyard/cache.registry-token   # or tls: { caFile, certFile, keyFile }
 *   leaseSeconds: 10
 *   drainGraceMs: 1000       # DRAINING before deregistration on stop
 * ```
 */
import { z } from 'zod';
import { id as namespaceName } from '../../bus/index.js';
import { busFlags, busSettings } from '../common/bus-settings.js';
import { tokenList } from '../common/callers.js';
import {
  type ComponentSpec,
  list,
  loadComponentConfig,
  type Setting,
} from '../common/component-config.js';
import { loadYamlConfig } from '../common/config.js';
import { serverTlsSettings } from '../common/server-tls.js';
import {
  hostIdField,
  hostIdSetting,
  selfRegistrationSettings,
} from '../discovery/self-registration.js';
import { DEFAULT_LIMITS, DEFAULT_POLICY } from './rules.js';

const port = z.number().int().min(0).max(65535);
const endpoint = (defaultPort: number) =>
  z.strictObject({ host: z.string().min(1).default('127.0.0.1'), port: port.default(defaultPort) });

const policy = z.strictObject({
  maxRecords: z.number().int().positive().default(DEFAULT_POLICY.maxRecords),
  eviction: z.enum(['reject', 'remove-oldest']).default(DEFAULT_POLICY.eviction),
  ttlSeconds: z.number().int().nonnegative().default(DEFAULT_POLICY.ttlSeconds),
});

export const cacheConfig = z.strictObject({
  id: namespaceName.default('cache-1'),
  hostId: hostIdField,
  bus: busSettings,
  grpc: endpoint(7470).default({ host: '127.0.0.1', port: 7470 }),
  admin: endpoint(7471).default({ host: '127.0.0.1', port: 7471 }),
  tls: serverTlsSettings.optional(),
  tokens: tokenList('namespace', namespaceName),
  limits: z
    .strictObject({
      maxKeyBytes: z.number().int().min(1).max(1024).default(DEFAULT_LIMITS.maxKeyBytes),
      maxValueBytes: z
        .number()
        .int()
        .min(1)
        .max(64 * 1024 * 1024)
        .default(DEFAULT_LIMITS.maxValueBytes),
    })
    .default(DEFAULT_LIMITS),
  defaults: policy.default(DEFAULT_POLICY),
  namespaces: z.record(namespaceName, policy).default({}),
  /**
   * How often a replica trims `remove-oldest` namespaces that writers racing on several
   * replicas took over `maxRecords`. Lapsed values need no round: the server removes them.
   */
  trim: z
    .strictObject({ intervalMs: z.number().int().min(50).default(1000) })
    .default({ intervalMs: 1000 }),
  /** Registration as service `halyard-cache`; the credential discovery grants that id. */
  discovery: selfRegistrationSettings.optional(),
});

export type CacheConfig = z.infer<typeof cacheConfig>;
/** What a test or an embedding program writes: every field has a default. */
export type CacheConfigInput = z.input<typeof cacheConfig>;

export function loadCacheConfig(file: string): Promise<CacheConfig> {
  return loadYamlConfig(cacheConfig, file);
}

const settings: readonly Setting[] = [
  ...busFlags,
  { flag: '--id <id>', path: 'id', description: 'this replica’s id' },
  hostIdSetting,
  { flag: '--grpc-host <ip>', path: 'grpc.host', description: 'gRPC listen address' },
  { flag: '--grpc-port <port>', path: 'grpc.port', description: 'gRPC port', parse: Number },
  {
    flag: '--discovery <addresses>',
    path: 'discovery.addresses',
    description: 'register in discovery through these replicas (comma-separated host:port)',
    parse: list,
  },
  {
    flag: '--admin-port <port>',
    path: 'admin.port',
    description: 'admin HTTP port',
    parse: Number,
  },
];

const spec: ComponentSpec<typeof cacheConfig> = {
  name: 'halyard-cache',
  description: 'Halyard cache replica: the Cache gRPC API on the bus',
  schema: cacheConfig,
  configEnv: 'HALYARD_CACHE_CONFIG',
  settings,
};

/** A replica's config from a file (`--config`), the environment and `argv`. */
export async function loadCacheSettings(argv: readonly string[]): Promise<CacheConfig> {
  return (await loadComponentConfig(spec, argv)).config;
}
