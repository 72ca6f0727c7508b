/**
 * The KV buckets and what each holds: its message type, how a value's key is formed,
 * and when a value lapses. A lapsing value is written with a per-message TTL, so the
 * server removes it and tells every watcher; readers also apply `expiresAt` themselves,
 * so a value stops being used at the same instant on every replica, whatever the
 * server's timer resolution (one second).
 */
import { type Codec, Codecs } from './codec.js';
import { type BucketName, Buckets, Keys } from './names.js';
import type {
  AffinityPreference,
  CacheEntry,
  HostChildren,
  Lease,
  MeshConfigVersionRecord,
  Rollout,
  ServiceInstance,
} from './schemas.js';

/**
 * How long the marker of a removal or an expiry stays in a bucket: long enough for a
 * watch resumed after a bus node failure to replay it, short enough that removed keys
 * do not accumulate.
 */
export const REMOVAL_MARKER_TTL_MS = 15 * 60_000;

/** What provisioning needs to know of a bucket. */
export interface BucketLayout {
  readonly name: BucketName;
  /** Values kept per key. */
  readonly history: number;
  /** Reads may be served by any replica (possibly stale) instead of the stream leader. */
  readonly allowDirect: boolean;
}

export interface BucketSpec<T> extends BucketLayout {
  readonly codec: Codec<T>;
  key(value: T): string;
  /** Epoch ms after which readers treat the value as gone; undefined: never. */
  expiresAt(value: T): number | undefined;
}

export const RegistryBucket: BucketSpec<ServiceInstance> = {
  name: Buckets.registry,
  codec: Codecs.serviceInstance,
  history: 1,
  // Renewals check the authoritative value: a lapsed lease must answer NOT_FOUND.
  allowDirect: false,
  key: (instance) => Keys.registry(instance.serviceId, instance.instanceId),
  expiresAt: (instance) => instance.renewedAtMs + instance.leaseSeconds * 1000,
};

export const AffinityBucket: BucketSpec<AffinityPreference> = {
  name: Buckets.affinity,
  codec: Codecs.affinityPreference,
  history: 1,
  allowDirect: false,
  key: (preference) => Keys.affinity(preference.serviceId, preference.userKey),
  expiresAt: (preference) => preference.lastSeenAtMs + preference.idleSeconds * 1000,
};

export const CacheBucket: BucketSpec<CacheEntry> = {
  name: Buckets.cache,
  codec: Codecs.cacheEntry,
  history: 1,
  allowDirect: false,
  key: (entry) => Keys.cache(entry.namespace, entry.key),
  expiresAt: (entry) => (entry.expiresAtMs > 0 ? entry.expiresAtMs : undefined),
};

/**
 * Leader leases (lease.ts): compare-and-set on the holder's last revision. Candidates
 * judge a lease free at renewedAtMs + ttlMs (`leaseLapsesAt`); the server removes it a
 * second later, because its TTLs have a resolution of a second and may fire early by
 * up to that: a removal must never come before the holder's own deadline.
 */
export const LeaseBucket: BucketSpec<Lease> = {
  name: Buckets.leases,
  codec: Codecs.lease,
  history: 1,
  allowDirect: false,
  key: (lease) => lease.name,
  expiresAt: (lease) => leaseLapsesAt(lease) + 1000,
};

/** When a lease is free for candidates: ttl after its holder's last renewal. */
export const leaseLapsesAt = (lease: Lease): number => lease.renewedAtMs + lease.ttlMs;

/**
 * What each host's launcher runs now, under the host's id: what a restarted launcher
 * recovers from. Reads are direct gets by key, the one kind of read NATS permissions
 * can confine to a single key, so a launcher reads its own host's value and no other.
 * A direct get may be answered by a follower; the value is read when a launcher starts,
 * long after its predecessor's last write was replicated.
 */
export const LaunchersBucket: BucketSpec<HostChildren> = {
  name: Buckets.launchers,
  codec: Codecs.hostChildren,
  history: 1,
  allowDirect: true,
  key: (children) => Keys.launcherChildren(children.hostId),
  expiresAt: () => undefined,
};

/**
 * One record per mesh configuration version: how far its rollout has come on each
 * host. Launchers take turns with compare-and-set on the record's revision, so reads
 * go to the leader.
 */
export const RolloutsBucket: BucketSpec<Rollout> = {
  name: Buckets.rollouts,
  codec: Codecs.rollout,
  history: 1,
  allowDirect: false,
  key: (rollout) => Keys.rollout(rollout.version),
  expiresAt: () => undefined,
};

/**
 * The versions of the mesh configuration (mesh-config.ts), one key each, created with
 * compare-and-set and never rewritten: the bucket is the configuration's history.
 * Reads go to the leader: a publish is based on the version read.
 */
export const ConfigBucket: BucketSpec<MeshConfigVersionRecord> = {
  name: Buckets.config,
  codec: Codecs.meshConfigVersion,
  history: 1,
  allowDirect: false,
  key: (v) => Keys.configVersion(v.version),
  expiresAt: () => undefined,
};

export const AllBuckets: readonly BucketSpec<unknown>[] = [
  RegistryBucket,
  AffinityBucket,
  CacheBucket,
  LeaseBucket,
  LaunchersBucket,
  RolloutsBucket,
  ConfigBucket,
];
