/**
 * The registration metadata that steers balancing (`lb.*`) and active health checks
 * (`health.*`). Discovery validates it on registration; gateways read it from their
 * local view. Keys under other prefixes are the owner's business and pass through.
 */
import { z } from 'zod';

const LB_PREFIX = 'lb.';
const HEALTH_PREFIX = 'health.';

const wholeNumber = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,10}$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const flag = z.enum(['true', 'false']).transform((value) => value === 'true');

/** A gRPC service name, or empty for the server's overall health. */
const healthService = z
  .string()
  .regex(
    /^$|^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/,
    'must be a gRPC service name or empty (the server as a whole)',
  );

/** `package.Service/Method`, as in a gRPC request path without its leading slash. */
const METHOD = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\/[A-Za-z_][A-Za-z0-9_]*$/;

/** Comma-separated full method names; duplicates are dropped, the list is sorted. */
const methodList = z
  .string()
  .transform((text) => text.split(',').map((name) => name.trim()))
  .pipe(
    z.array(
      z
        .string()
        .regex(METHOD, 'must list full method names, e.g. pkg.Service/Method,pkg.Service/Other'),
    ),
  )
  .transform((names) => [...new Set(names)].sort());

const schema = z.strictObject({
  'lb.policy': z.enum(['round-robin', 'header', 'user']).default('round-robin'),
  /** How long a user's preference survives without requests (default 8 h, at most 30 days). */
  'lb.idleSeconds': wholeNumber(1, 30 * 86_400).default(8 * 3600),
  'lb.maxUsersPerInstance': wholeNumber(1, 1_000_000).optional(),
  'lb.whenFull': z.enum(['reject', 'overflow']).default('reject'),
  'lb.whenDown': z.enum(['failover', 'strict']).default('failover'),
  'lb.requireUser': flag.default(false),
  /**
   * Methods that are safe to run twice: a gateway may retry them on another instance
   * even when the first may have run them. Others are retried only when provably not run.
   */
  'lb.idempotentMethods': methodList.optional(),
  /** Presence enables `grpc.health.v1` probing of this service name. */
  'health.grpc': healthService.optional(),
});

export interface BalancingSettings {
  readonly policy: 'round-robin' | 'header' | 'user';
  readonly idleSeconds: number;
  readonly maxUsersPerInstance: number | undefined;
  readonly whenFull: 'reject' | 'overflow';
  readonly whenDown: 'failover' | 'strict';
  readonly requireUser: boolean;
  /** Full method names (`pkg.Service/Method`) a gateway may run twice; sorted. */
  readonly idempotentMethods: readonly string[];
}

export interface HealthSettings {
  /** Service name passed to `grpc.health.v1.Health/Check`; undefined: not probed. */
  readonly grpcService: string | undefined;
}

export interface InstanceSettings {
  readonly lb: BalancingSettings;
  readonly health: HealthSettings;
}

export type MetadataResult =
  | { readonly ok: true; readonly settings: InstanceSettings }
  | { readonly ok: false; readonly problems: readonly string[] };

/** Parses `lb.*` and `health.*`; every problem names its key, e.g. `metadata["lb.policy"]: …`. */
export function parseInstanceMetadata(metadata: Readonly<Record<string, string>>): MetadataResult {
  const ours = Object.fromEntries(
    Object.entries(metadata).filter(
      ([key]) => key.startsWith(LB_PREFIX) || key.startsWith(HEALTH_PREFIX),
    ),
  );
  const result = schema.safeParse(ours);
  if (!result.success) {
    const problems = result.error.issues.flatMap((issue) =>
      issue.code === 'unrecognized_keys'
        ? issue.keys.map((key) => `metadata["${key}"]: unknown setting`)
        : [`metadata["${String(issue.path[0])}"]: ${issue.message}`],
    );
    return { ok: false, problems };
  }
  const v = result.data;
  return {
    ok: true,
    settings: {
      lb: {
        policy: v['lb.policy'],
        idleSeconds: v['lb.idleSeconds'],
        maxUsersPerInstance: v['lb.maxUsersPerInstance'],
        whenFull: v['lb.whenFull'],
        whenDown: v['lb.whenDown'],
        requireUser: v['lb.requireUser'],
        idempotentMethods: v['lb.idempotentMethods'] ?? [],
      },
      health: { grpcService: v['health.grpc'] },
    },
  };
}
