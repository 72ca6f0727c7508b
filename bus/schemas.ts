/**
 * What protobuf cannot say about a bus message: formats, ranges, required fields.
 * Every message is checked against its schema before it is written and after it
 * is decoded, so nothing invalid is ever trusted or stored.
 */
import { z } from 'zod';
import { halyard } from '../proto/gen/halyard.js';
import { TOKEN_PATTERN, USER_KEY_PATTERN } from './names.js';

const { InstanceStatus } = halyard.discovery.v1;

export const id = z.string().regex(TOKEN_PATTERN, 'must be 1–64 characters of A–Z a–z 0–9 _ -');
const optionalId = z.union([z.literal(''), id]);
const epochMs = z.number().int().nonnegative();
const text = (max: number) => z.string().max(max);

/** Fully qualified gRPC service name, e.g. `acme.orders.v1.Orders`. */
export const grpcServiceName = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/,
    'must be a gRPC service name like acme.orders.v1.Orders',
  );

/** `host:port`, `[v6]:port`; the host is a name or an address, the port 1–65535. */
export const address = z
  .string()
  .max(261)
  .refine((value) => {
    const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
    return match !== null && Number(match[2]) >= 1 && Number(match[2]) <= 65535;
  }, 'must be host:port with a port 1–65535');

/** Enum values from the contracts; the zero value (UNSPECIFIED) is never valid on the bus. */
function specified<T extends Record<string, string | number>>(values: T) {
  return z.enum(values).refine((v) => v !== 0, 'must be set (not UNSPECIFIED)');
}

export const serviceInstance = z.object({
  serviceId: id,
  instanceId: id,
  address,
  grpcServices: z.array(grpcServiceName).max(256),
  status: specified(InstanceStatus),
  metadata: z.record(text(256), text(4096)),
  leaseSeconds: z.number().int().min(1).max(86_400),
  registeredAtMs: epochMs,
  renewedAtMs: epochMs,
  launcherId: optionalId,
  hostId: optionalId,
  version: text(128),
});

export const affinityPreference = z.object({
  serviceId: id,
  userKey: z.string().regex(USER_KEY_PATTERN, 'must be a base64url HMAC digest'),
  instanceId: id,
  createdAtMs: epochMs,
  lastSeenAtMs: epochMs,
  idleSeconds: z.number().int().min(1),
  gatewayId: optionalId,
});

export const cacheEntry = z.object({
  namespace: id,
  key: z.string().min(1).max(1024),
  value: z.instanceof(Uint8Array),
  createdAtMs: epochMs,
  updatedAtMs: epochMs,
  expiresAtMs: epochMs,
});

export const lease = z.object({
  name: id,
  holder: z.string().min(1).max(256),
  acquiredAtMs: epochMs,
  renewedAtMs: epochMs,
  ttlMs: z.number().int().min(1000),
});

const launcherMarkerValue = z.string().max(200);

export const runningChild = z.object({
  component: id,
  instance: z.number().int().min(1),
  pid: z.number().int().min(2),
  processStart: z.number().int().nonnegative(),
  port: z.number().int().min(0).max(65535),
  marker: launcherMarkerValue,
  launcherId: id,
  configVersion: z.number().int().nonnegative(),
  specDigest: z.union([z.literal(''), z.string().regex(/^[0-9a-f]{64}$/)]),
});

export const hostChildren = z.object({
  hostId: id,
  launcherId: id,
  updatedAtMs: epochMs,
  children: z.array(runningChild).max(10_000),
});

export const hostRollout = z.object({
  hostId: id,
  state: specified(halyard.launcher.v1.HostRollout.State),
  reason: text(4096),
  launcherId: id,
  updatedAtMs: epochMs,
});

export const rollout = z.object({
  version: z.number().int().min(1),
  state: specified(halyard.launcher.v1.Rollout.State),
  reason: text(4096),
  hosts: z.array(hostRollout).max(10_000),
  updatedAtMs: epochMs,
  createdAtMs: epochMs,
});

const eventBase = {
  eventId: z.string().min(1).max(256),
  occurredAtMs: epochMs,
};

export const lifecycleEvent = z.object({
  ...eventBase,
  kind: specified(halyard.launcher.v1.LifecycleEvent.Kind),
  hostId: id,
  launcherId: id,
  component: id,
  instance: z.number().int().nonnegative(),
  pid: z.number().int().nonnegative(),
  port: z.number().int().min(0).max(65535),
  exitCode: z.number().int(),
  signal: text(32),
  uptimeMs: epochMs,
  attempt: z.number().int().nonnegative(),
  delayMs: epochMs,
  reason: text(1024),
  processStart: z.number().int().nonnegative(),
});

/** Control requests and replies of the launcher (`halyard.launcher.v1`). */
export const displayRequest = z.object({});
export const refreshRequest = z.object({});
export const componentRequest = z.object({
  component: id,
  instance: z.number().int().nonnegative(),
});

const { State } = halyard.launcher.v1.ProcessStatus;

export const processStatus = z.object({
  component: id,
  instance: z.number().int().min(1),
  state: specified(State),
  pid: z.number().int().nonnegative(),
  port: z.number().int().min(0).max(65535),
  startedAtMs: epochMs,
  restarts: z.number().int().nonnegative(),
  lastExit: text(256),
});

export const launcherStatus = z.object({
  hostId: id,
  launcherId: id,
  startedAtMs: epochMs,
  processes: z.array(processStatus),
  components: z.array(id),
  version: text(128),
});

export const commandResult = z.object({
  accepted: z.boolean(),
  detail: text(4096),
  status: launcherStatus.nullable(),
});

export const gatewayEvent = z.object({
  ...eventBase,
  kind: specified(halyard.gateway.v1.GatewayEvent.Kind),
  gatewayId: id,
  serviceId: optionalId,
  instanceId: optionalId,
  toInstanceId: optionalId,
  userKey: z.union([z.literal(''), z.string().regex(USER_KEY_PATTERN)]),
  ejectionSeconds: z.number().int().nonnegative(),
  reason: text(1024),
});

export const discoveryEvent = z.object({
  ...eventBase,
  kind: specified(halyard.discovery.v1.DiscoveryEvent.Kind),
  replicaId: id,
  serviceId: optionalId,
  instanceId: optionalId,
  status: z.enum(InstanceStatus),
  detail: text(1024),
});

export type ServiceInstance = z.infer<typeof serviceInstance>;
export type AffinityPreference = z.infer<typeof affinityPreference>;
export type CacheEntry = z.infer<typeof cacheEntry>;
/** Large enough for any mesh, well under the bus's largest message (1 MiB by default). */
const MESH_CONFIG_MAX_BYTES = 512 * 1024;

export const meshConfigVersion = z
  .object({
    version: z.number().int().min(1),
    content: z.string().min(1).max(MESH_CONFIG_MAX_BYTES),
    author: z.string().min(1).max(256),
    publishedAtMs: epochMs,
    summary: z.string().max(1000),
    basedOn: z.number().int().min(0),
    restartUnchanged: z.boolean(),
  })
  .refine((v) => v.basedOn < v.version, { path: ['basedOn'], message: 'must be below version' });

export type Lease = z.infer<typeof lease>;
export type RunningChild = z.infer<typeof runningChild>;
export type HostChildren = z.infer<typeof hostChildren>;
export type HostRollout = z.infer<typeof hostRollout>;
export type Rollout = z.infer<typeof rollout>;
export type LifecycleEvent = z.infer<typeof lifecycleEvent>;
export type GatewayEvent = z.infer<typeof gatewayEvent>;
export type ComponentRequest = z.infer<typeof componentRequest>;
export type ProcessStatus = z.infer<typeof processStatus>;
export type LauncherStatus = z.infer<typeof launcherStatus>;
export type CommandResult = z.infer<typeof commandResult>;
export type DiscoveryEvent = z.infer<typeof discoveryEvent>;
export type MeshConfigVersionRecord = z.infer<typeof meshConfigVersion>;
