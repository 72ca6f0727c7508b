/**
 * Idempotent provisioning of every stream and bucket: an explicit step, run by the
 * bus's admin (`halyard bus provision`, or `halyard up` for its local bus). Components
 * only check that what they use is there (checkProvisioned) and say what to run when it
 * is not. An existing stream whose configuration differs is an error that names the
 * stream and the field: Halyard never silently reconfigures an operator's bus.
 */
import { isDeepStrictEqual } from 'node:util';
import {
  DiscardPolicy,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from '@nats-io/jetstream';
import type { Kvm } from '@nats-io/kv';
import { nanos } from '@nats-io/transport-node';
import type { BucketLayout } from './buckets.js';
import { AllBuckets, REMOVAL_MARKER_TTL_MS } from './buckets.js';
import type { Logger } from './log.js';
import { LogIds } from './log.js';
import { type BucketName, DEADLETTER_STREAM, EVENTS_STREAM, kvStream, Subjects } from './names.js';
import { deniedBy, retryTransient } from './retry.js';
import { rolePublishes } from './roles.js';

export interface ProvisionOptions {
  /** 3 on a cluster, 1 on a single server. */
  readonly replicas: number;
  /** How long events are kept (default 7 days). */
  readonly eventsMaxAgeMs?: number;
  /** Window in which a republished event id is dropped as a duplicate (default 2 min, at most the retention). */
  readonly eventsDuplicateWindowMs?: number;
  /**
   * The most the events stream (and the dead letters) may hold on disk; the oldest
   * events go first, so a flood cannot fill the servers' disks (default 256 MiB, about
   * a million events; dead letters a quarter of it). JetStream reserves it in each
   * server's `max_file_store`.
   */
  readonly eventsMaxBytes?: number;
}

const EVENTS_MAX_BYTES = 256 * 1024 ** 2;

export class BusConfigError extends Error {
  override readonly name = 'BusConfigError';
}

/** What to run when the bus lacks a stream or a bucket. */
export const PROVISION_HINT =
  'run `halyard bus provision` once with the admin role (HALYARD_NATS_CA, HALYARD_NATS_CERT, HALYARD_NATS_KEY and HALYARD_NATS_NKEY set to the files of roles/admin made by `halyard certs`; none on an open bus)';

const DAY_MS = 86_400_000;

const eventsMaxAgeMs = (options: ProvisionOptions) => options.eventsMaxAgeMs ?? 7 * DAY_MS;

/** Two minutes, or the retention when shorter: the server refuses a window longer than it. */
const defaultDuplicateWindowMs = (options: ProvisionOptions) =>
  Math.min(120_000, eventsMaxAgeMs(options));

type Expected = Partial<Record<keyof StreamConfig, unknown>>;

export function eventsStreamConfig(
  options: ProvisionOptions,
): Partial<StreamConfig> & { name: string } {
  return {
    name: EVENTS_STREAM,
    subjects: [Subjects.allEvents],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: options.replicas,
    max_age: nanos(eventsMaxAgeMs(options)),
    max_bytes: options.eventsMaxBytes ?? EVENTS_MAX_BYTES,
    duplicate_window: nanos(options.eventsDuplicateWindowMs ?? defaultDuplicateWindowMs(options)),
    discard: DiscardPolicy.Old,
  };
}

/** What a bucket provisioned by an older Halyard lacks, and may be given in place. */
const upgradable = {
  // Per-message TTLs: lapsed values are removed by the server, with a marker.
  allow_msg_ttl: true,
  subject_delete_marker_ttl: nanos(REMOVAL_MARKER_TTL_MS),
} satisfies Expected;

function bucketExpectations(spec: BucketLayout, replicas: number): Expected {
  return {
    num_replicas: replicas,
    storage: StorageType.File,
    max_msgs_per_subject: spec.history,
    allow_direct: spec.allowDirect,
    // Values lapse one by one (per-message TTL); a bucket-wide age would remove live ones.
    max_age: 0,
    ...upgradable,
  };
}

/** Names the first field that differs; an empty list when the stream is as expected. */
export function configDifferences(
  stream: string,
  actual: StreamConfig,
  expected: Expected,
): string[] {
  return Object.entries(expected)
    .filter(([field, want]) => !isDeepStrictEqual(actual[field as keyof StreamConfig], want))
    .map(
      ([field, want]) =>
        `stream ${stream}: ${field} is ${JSON.stringify(actual[field as keyof StreamConfig])} on the server, Halyard expects ${JSON.stringify(want)}`,
    );
}

async function streamConfig(
  jsm: JetStreamManager,
  name: string,
): Promise<StreamConfig | undefined> {
  try {
    return (await jsm.streams.info(name)).config;
  } catch (error) {
    if ((error as Error).name === 'StreamNotFoundError') return undefined;
    throw error;
  }
}

function check(stream: string, actual: StreamConfig, expected: Expected): void {
  const differences = configDifferences(stream, actual, expected);
  if (differences.length > 0) {
    throw new BusConfigError(
      `${differences.join('; ')}. Fix the stream by hand (nats stream edit/rm) or point Halyard at a bus provisioned with these settings.`,
    );
  }
}

export function deadLetterStreamConfig(
  options: ProvisionOptions,
): Partial<StreamConfig> & { name: string } {
  return {
    name: DEADLETTER_STREAM,
    subjects: [Subjects.allDeadLetters],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: options.replicas,
    max_age: nanos(eventsMaxAgeMs(options)),
    max_bytes: Math.floor((options.eventsMaxBytes ?? EVENTS_MAX_BYTES) / 4),
    duplicate_window: nanos(defaultDuplicateWindowMs(options)),
    discard: DiscardPolicy.Old,
  };
}

async function ensureStream(
  jsm: JetStreamManager,
  expected: Partial<StreamConfig> & { name: string },
) {
  const existing = await streamConfig(jsm, expected.name);
  // `add` with an identical config is a no-op on the server, so racing creators agree.
  let actual = existing ?? (await jsm.streams.add(expected)).config;
  if (actual.max_bytes === -1 && expected.max_bytes !== undefined) {
    // Streams made before the cap was introduced are unbounded: capping keeps every
    // message that fits, and only ever drops the oldest.
    actual = (await jsm.streams.update(expected.name, { ...actual, max_bytes: expected.max_bytes }))
      .config;
  }
  const { name, ...fields } = expected;
  check(name, actual, fields);
}

/** Resolves true when the bucket was made by an older Halyard and upgraded in place. */
async function ensureBucket(
  jsm: JetStreamManager,
  kvm: Kvm,
  spec: BucketLayout,
  replicas: number,
  logger: Logger,
): Promise<boolean> {
  const stream = kvStream(spec.name);
  if (!(await streamConfig(jsm, stream))) {
    await kvm.create(spec.name, {
      history: spec.history,
      replicas,
      storage: StorageType.File,
      allow_direct: spec.allowDirect,
      markerTTL: REMOVAL_MARKER_TTL_MS,
    });
  }
  let actual = await streamConfig(jsm, stream);
  if (!actual) throw new BusConfigError(`stream ${stream} could not be created`);
  const missing = configDifferences(stream, actual, upgradable);
  const upgrade = missing.length > 0;
  if (upgrade) {
    // Turning per-message TTLs on is one-way and changes no stored message.
    actual = (await jsm.streams.update(stream, { ...actual, ...upgradable })).config;
    logger.warn(
      { msgId: LogIds.bucketUpgraded, stream, changes: missing },
      'bucket upgraded in place to per-message TTLs',
    );
  }
  check(stream, actual, bucketExpectations(spec, replicas));
  return upgrade;
}

/**
 * Checks that every stream and bucket this connection may see exists as Halyard
 * expects (retention limits aside), changing nothing. Streams the role may not read are
 * the business of the roles that use them, and are skipped: a known `role`'s are not
 * asked for at all (a refused request is a permissions violation the server and the
 * connection both log as an error); a connection of another name skips those refused.
 */
export async function checkProvisioned(
  jsm: JetStreamManager,
  options: ProvisionOptions,
  role?: string,
): Promise<void> {
  const expected: Array<[string, Expected]> = [
    ...[eventsStreamConfig(options), deadLetterStreamConfig(options)].map(
      // How long and how much the streams keep is the admin's choice at provisioning;
      // a component relies on their shape, not on their retention.
      ({ name, max_age, max_bytes, duplicate_window, ...fields }): [string, Expected] => [
        name,
        fields,
      ],
    ),
    ...AllBuckets.map((spec): [string, Expected] => [
      kvStream(spec.name),
      bucketExpectations(spec, options.replicas),
    ]),
  ];
  for (const [stream, fields] of expected) {
    if (role && rolePublishes(role, `$JS.API.STREAM.INFO.${stream}`) === false) continue;
    let actual: StreamConfig | undefined;
    try {
      actual = await retryTransient(() => streamConfig(jsm, stream));
    } catch (error) {
      if (deniedBy(error)) continue;
      throw error;
    }
    if (!actual) throw new BusConfigError(`the bus has no stream ${stream}: ${PROVISION_HINT}`);
    const differences = configDifferences(stream, actual, fields);
    if (differences.length > 0) {
      throw new BusConfigError(
        `${differences.join('; ')}. If the bus was provisioned by an older Halyard, ${PROVISION_HINT}; otherwise fix the stream by hand (nats stream edit/rm).`,
      );
    }
  }
}

/** Resolves to the buckets an older Halyard made, upgraded in place by this call. */
export async function provision(
  jsm: JetStreamManager,
  kvm: Kvm,
  options: ProvisionOptions,
  logger: Logger,
): Promise<BucketName[]> {
  // Components starting together on a fresh cluster race to create the same R3
  // streams; the losers' requests can time out while placement settles. Creating an
  // identical stream is a no-op, so retrying is safe.
  await retryTransient(() => ensureStream(jsm, eventsStreamConfig(options)));
  await retryTransient(() => ensureStream(jsm, deadLetterStreamConfig(options)));
  const upgraded: BucketName[] = [];
  for (const spec of AllBuckets) {
    if (await retryTransient(() => ensureBucket(jsm, kvm, spec, options.replicas, logger))) {
      upgraded.push(spec.name);
    }
  }
  logger.info(
    {
      msgId: LogIds.provisioned,
      replicas: options.replicas,
      buckets: AllBuckets.map((b) => b.name),
    },
    'bus streams and buckets ready',
  );
  return upgraded;
}
