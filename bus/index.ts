/** Halyard's bus: the only code that talks to NATS. */

export {
  AffinityBucket,
  AllBuckets,
  type BucketSpec,
  CacheBucket,
  ConfigBucket,
  LaunchersBucket,
  LeaseBucket,
  RegistryBucket,
  RolloutsBucket,
} from './buckets.js';
export {
  Bus,
  type BusAuth,
  type BusOptions,
  type BusTls,
  type ServerInfo,
  type Snapshot,
  type StreamHealth,
} from './bus.js';
export { type Codec, Codecs, InvalidMessageError, type MessageOrigin } from './codec.js';
export {
  type ControlCode,
  type ControlCodecs,
  ControlError,
  type ControlHandler,
  type ControlReply,
  type Served,
} from './control.js';
export { type BusEvent, EventPublisher, type PublishedEvent } from './events.js';
export type { LeaseHold, LeaseOptions } from './lease.js';
export { LogIds } from './log.js';
export {
  ConfigConflictError,
  type MeshConfigStore,
  type MeshConfigVersion,
} from './mesh-config.js';
export { busMetrics } from './metrics.js';
export {
  Buckets,
  CONTROL_ALL,
  DEADLETTER_STREAM,
  DeadLetterHeaders,
  EVENTS_STREAM,
  type EventSource,
  EventSources,
  Headers,
  inboxPrefix,
  Keys,
  kvStream,
  Subjects,
} from './names.js';
export { BusConfigError, type ProvisionOptions } from './provision.js';
export {
  newUserNkey,
  type Permissions,
  type Role,
  Roles,
  roleName,
  rolePermissions,
  rolePublishes,
} from './roles.js';
export * from './schemas.js';
export { readSecretFile } from './secret-file.js';
export { KeyChangedError, KeyExistsError, KvStore, type Revisioned } from './store.js';
export type {
  Delivery,
  DeliveryMeta,
  Handler,
  KvChange,
  ReplayOptions,
  StartFrom,
  SubscribeOptions,
  Subscription,
  SubscriptionKind,
} from './subscriber.js';
export {
  type EntryChange,
  LocalView,
  type RemovalReason,
  type ViewChange,
  type ViewOptions,
} from './view.js';
