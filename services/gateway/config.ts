/**
 * The gateway's settings: YAML file, then environment variables, then flags (see
 * services/common/component-config.ts), validated by one strict zod schema whose
 * errors name the field.
 */
import { z } from 'zod';
import { id } from '../../bus/index.js';
import { busFlags, busSettings } from '../common/bus-settings.js';
import {
  type ComponentSpec,
  list,
  loadComponentConfig,
  type Setting,
} from '../common/component-config.js';
import {
  hostIdField,
  hostIdSetting,
  selfRegistrationSettings,
} from '../discovery/self-registration.js';

/** The service id gateways register as: listed by `halyard status`, found by clients. */
export const GATEWAY_SERVICE_ID = 'halyard-gateway';

const port = z.number().int().min(0).max(65_535);

/** A gRPC service name (`pkg.Service`), or a package prefix ending in a dot (`pkg.`). */
const serviceOrPrefix = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.?$/,
    'must be a gRPC service name (pkg.Service) or a package prefix ending in "." (pkg.)',
  );

export const gatewayConfigSchema = z.strictObject({
  /** This replica's id: in events, logs and the `x-halyard-gateway` header. */
  id,
  bus: busSettings,
  listen: z
    .strictObject({ host: z.string().default('0.0.0.0'), port: port.default(8080) })
    .prefault({}),
  /** Client-facing TLS (ALPN h2); plain h2c when absent. */
  tls: z.strictObject({ certFile: z.string().min(1), keyFile: z.string().min(1) }).optional(),
  admin: z
    .strictObject({ host: z.string().default('127.0.0.1'), port: port.default(9090) })
    .prefault({}),
  /** Which gRPC services this gateway routes to clients (see services/gateway/README.md). */
  routing: z
    .strictObject({
      /** When set, only these services (names or `pkg.` prefixes) are routed. */
      allow: z.array(serviceOrPrefix).optional(),
      /** Halyard's own services (`halyard.*`) routed all the same; none by default. */
      exposeInternal: z.array(serviceOrPrefix).default([]),
    })
    .prefault({}),
  limits: z
    .strictObject({
      /** HTTP/2 header list size advertised to clients; larger requests are refused. */
      maxHeaderListBytes: z.number().int().min(1024).default(16_384),
      /** Concurrent calls per gateway before RESOURCE_EXHAUSTED; 0: no limit. */
      maxConcurrentCalls: z.number().int().nonnegative().default(0),
      /** Cap on every call's deadline, also given to calls without one; 0: none. */
      maxTimeoutMs: z.number().int().nonnegative().default(3_600_000),
      /** Calls one client connection may have open at once (HTTP/2 SETTINGS). */
      maxConcurrentStreams: z.number().int().min(1).default(1000),
      /** Client connections open at once; beyond, new ones are closed at accept. 0: no cap. */
      maxConnections: z.number().int().nonnegative().default(10_000),
      /** A client connection without a call for this long is closed (GOAWAY). 0: never. */
      idleConnectionSeconds: z.number().nonnegative().default(600),
      /** Flow-control window per stream and per connection, both ways. */
      windowBytes: z
        .number()
        .int()
        .min(65_535)
        .max(2 ** 31 - 1)
        .default(1 << 20),
    })
    .prefault({}),
  retry: z
    .strictObject({
      maxAttempts: z.number().int().min(1).max(10).default(3),
      /** Retries in flight as a share of calls in flight (Envoy's budget_percent / 100). */
      budgetRatio: z.number().min(0).max(1).default(0.2),
      minConcurrent: z.number().int().nonnegative().default(3),
      /** Request bytes kept for replay on another instance; larger requests are not retried. */
      bufferBytes: z.number().int().nonnegative().default(65_536),
    })
    .prefault({}),
  ejection: z
    .strictObject({
      consecutiveFailures: z.number().int().min(1).default(3),
      baseSeconds: z.number().positive().default(5),
      maxSeconds: z.number().positive().default(300),
    })
    .prefault({}),
  upstream: z
    .strictObject({
      backoffBaseMs: z.number().int().positive().default(100),
      backoffMaxMs: z.number().int().positive().default(10_000),
      /** Internal TLS towards instances (h2 by ALPN); h2c when absent. Cert and key: mTLS. */
      tls: z
        .strictObject({
          caFile: z.string().min(1),
          certFile: z.string().min(1).optional(),
          keyFile: z.string().min(1).optional(),
        })
        .optional(),
    })
    .prefault({}),
  /** Sticky routing (`lb.policy=user`): how callers are verified and keyed. */
  affinity: z
    .strictObject({
      /**
       * Key of the HMAC that turns a user id into the user key stored on the bus; the
       * same on every gateway (env HALYARD_GATEWAY_MESH_SECRET). Never logged.
       */
      meshSecret: z.string().min(16, 'must be at least 16 characters').optional(),
      jwt: z
        .strictObject({
          /** Shared secret of HS256 tokens (env HALYARD_GATEWAY_JWT_SECRET). */
          hs256Secret: z.string().min(32, 'must be at least 32 characters').optional(),
          /** PEM files of RS256 / ES256 public keys. */
          publicKeyFiles: z.array(z.string().min(1)).default([]),
          /** JSON Web Key Set files. */
          jwksFiles: z.array(z.string().min(1)).default([]),
          /** JSON Web Key Set URLs (https), fetched and cached, refetched for an unknown `kid`. */
          jwksUrls: z.array(z.url({ protocol: /^https?$/ })).default([]),
          /** How long a fetched key set is used before it is fetched again. */
          jwksCacheSeconds: z.number().positive().default(600),
          /** Required `iss`; unchecked (with a warning at start) when absent. */
          issuer: z.string().min(1).optional(),
          /** Required `aud`; unchecked (with a warning at start) when absent. */
          audience: z.string().min(1).optional(),
          /** Longest accepted token lifetime (`exp` - `iat`, or `exp` - now). */
          maxLifetimeSeconds: z.number().int().positive().default(86_400),
        })
        .prefault({}),
    })
    .prefault({}),
  /**
   * Registration as service `halyard-gateway` once ready (the credential discovery
   * grants that id); `advertise` is the client-facing address, by default listen
   * host:port, so set it when listening on every interface.
   */
  discovery: selfRegistrationSettings.optional(),
  hostId: hostIdField,
  /**
   * Processes serving the listener: one port, each new connection handed to the next
   * worker in turn (services/gateway/workers.ts). `auto`: one per available core; 1: a
   * single process, no supervisor.
   */
  workers: z.union([z.literal('auto'), z.number().int().min(1).max(1024)]).default(1),
  /** On SIGTERM, calls in flight get this long to finish after GOAWAY. */
  stopTimeoutSeconds: z.number().positive().default(20),
});

export type GatewayConfig = z.infer<typeof gatewayConfigSchema>;
export type GatewayConfigInput = z.input<typeof gatewayConfigSchema>;

/** `host:port`; an empty host is every interface. */
function hostPort(text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(':');
  return { host: text.slice(0, colon) || '0.0.0.0', port: Number(text.slice(colon + 1)) };
}

const settings: readonly Setting[] = [
  ...busFlags,
  { flag: '--id <id>', env: 'HALYARD_GATEWAY_ID', path: 'id', description: 'gateway replica id' },
  hostIdSetting,
  {
    flag: '--listen <host:port>',
    env: 'HALYARD_GATEWAY_LISTEN',
    path: 'listen',
    description: 'gRPC listen address',
    parse: hostPort,
  },
  {
    flag: '--admin <host:port>',
    env: 'HALYARD_GATEWAY_ADMIN',
    path: 'admin',
    description: 'admin HTTP address',
    parse: hostPort,
  },
  {
    flag: '--allow-services <list>',
    env: 'HALYARD_GATEWAY_ALLOW_SERVICES',
    path: 'routing.allow',
    description: 'the only gRPC services routed (names, or pkg. prefixes), comma-separated',
    parse: list,
  },
  {
    flag: '--expose-internal <list>',
    env: 'HALYARD_GATEWAY_EXPOSE_INTERNAL',
    path: 'routing.exposeInternal',
    description: 'halyard.* services routed all the same (names, or prefixes), comma-separated',
    parse: list,
  },
  {
    flag: '--workers <auto|n>',
    env: 'HALYARD_GATEWAY_WORKERS',
    path: 'workers',
    description: 'processes serving the listener: a number, or auto (one per core)',
    parse: (text) => (text === 'auto' ? text : Number(text)),
  },
  {
    flag: '--tls-cert <file>',
    path: 'tls.certFile',
    description: 'client-facing TLS certificate (PEM)',
  },
  { flag: '--tls-key <file>', path: 'tls.keyFile', description: 'client-facing TLS key (PEM)' },
  {
    flag: '--discovery <addresses>',
    env: 'HALYARD_GATEWAY_DISCOVERY',
    path: 'discovery.addresses',
    description: 'register as halyard-gateway through these discovery replicas, comma-separated',
    parse: list,
  },
  {
    flag: '--discovery-token-file <file>',
    env: 'HALYARD_GATEWAY_DISCOVERY_TOKEN_FILE',
    path: 'discovery.tokenFile',
    description: 'file holding the token discovery grants service halyard-gateway',
  },
  {
    flag: '--advertise <host:port>',
    env: 'HALYARD_GATEWAY_ADVERTISE',
    path: 'discovery.advertise',
    description: 'the client-facing address registered in discovery (default: listen)',
  },
  {
    env: 'HALYARD_GATEWAY_MESH_SECRET',
    path: 'affinity.meshSecret',
    description: 'key of the HMAC of user ids',
  },
  {
    env: 'HALYARD_GATEWAY_JWT_SECRET',
    path: 'affinity.jwt.hs256Secret',
    description: 'shared secret of HS256 tokens',
  },
  {
    env: 'HALYARD_GATEWAY_JWT_ISSUER',
    path: 'affinity.jwt.issuer',
    description: 'required `iss` of bearer tokens',
  },
  {
    env: 'HALYARD_GATEWAY_JWT_AUDIENCE',
    path: 'affinity.jwt.audience',
    description: 'required `aud` of bearer tokens',
  },
];

const spec: ComponentSpec<typeof gatewayConfigSchema> = {
  name: 'halyard-gateway',
  description: 'Halyard gRPC gateway replica',
  schema: gatewayConfigSchema,
  configEnv: 'HALYARD_GATEWAY_CONFIG',
  settings,
};

/** The gateway's config from a file (`--config`), the environment and `argv`. */
export async function loadGatewayConfig(argv: readonly string[]): Promise<GatewayConfig> {
  return (await loadComponentConfig(spec, argv)).config;
}
