/**
 * Every name Halyard uses on the bus: buckets, streams, subjects, headers and keys.
 * Nothing else in the code base spells one of these strings.
 */

export const Buckets = {
  registry: 'halyard-registry',
  affinity: 'halyard-affinity',
  cache: 'halyard-cache',
  leases: 'halyard-leases',
  launchers: 'halyard-launchers',
  rollouts: 'halyard-rollouts',
  config: 'halyard-config',
} as const;
export type BucketName = (typeof Buckets)[keyof typeof Buckets];

export const EVENTS_STREAM = 'HALYARD_EVENTS';
/** Messages a durable subscriber gave up on, with their reasons. */
export const DEADLETTER_STREAM = 'HALYARD_DEADLETTER';

/** The stream behind a KV bucket. */
export const kvStream = (bucket: BucketName) => `KV_${bucket}`;

/** Sources of events; the third token of every event subject. */
export const EventSources = ['lifecycle', 'gateway', 'discovery'] as const;
export type EventSource = (typeof EventSources)[number];

/** The source an event subject (`halyard.events.<source>.…`) names; undefined when none. */
export function eventSourceOf(subject: string): EventSource | undefined {
  const token = subject.split('.')[2];
  return EventSources.find((source) => source === token);
}

/** Where a role's replies arrive: the connection's inbox prefix, `_INBOX.<role>`. */
export const inboxPrefix = (name: string) => `_INBOX.${name}`;

/** The control id that addresses every instance of a component; no instance may be named so. */
export const CONTROL_ALL = 'all';

export const Headers = {
  /** Fully qualified protobuf type of the payload, e.g. `halyard.launcher.v1.LifecycleEvent`. */
  type: 'Halyard-Type',
  /** JetStream de-duplication id (within the stream's duplicate window). */
  msgId: 'Nats-Msg-Id',
  /** Set by KV on deletes and purges (`DEL`, `PURGE`). */
  kvOperation: 'KV-Operation',
  /** A failed control reply: `<gRPC status name>: <message>`, with no body. */
  error: 'Halyard-Error',
} as const;

/** Added to a dead-lettered message, beside its original headers. */
export const DeadLetterHeaders = {
  reason: 'Halyard-Dead-Reason',
  stream: 'Halyard-Dead-Stream',
  subject: 'Halyard-Dead-Subject',
  seq: 'Halyard-Dead-Seq',
} as const;

/** One subject token: ids used on the bus are restricted to these characters. */
const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;
export const TOKEN_PATTERN = TOKEN;

export function assertToken(kind: string, value: string): string {
  if (!TOKEN.test(value)) {
    throw new RangeError(`${kind} "${value}" must be 1–64 characters of A–Z a–z 0–9 _ -`);
  }
  return value;
}

/** Where a bucket's keys live: `$KV.<bucket>`. */
const kvPrefix = (bucket: BucketName) => `$KV.${bucket}`;
const controlOf = (component: string) => `halyard.ctl.${assertToken('component', component)}`;

export const Subjects = {
  /** Everything the events stream stores. */
  allEvents: 'halyard.events.>',
  /** `halyard.events.<tokens>`: the events under a filter of the tokens after `halyard.events.`. */
  events: (tokens: string) => `halyard.events.${tokens}`,
  /** `halyard.events.<source>.<tokens>`: one source's events under a filter of the tokens after its prefix. */
  eventsOf: (source: EventSource, tokens: string) => `halyard.events.${source}.${tokens}`,
  lifecycle: (hostId: string, component: string, kind: string) =>
    `halyard.events.lifecycle.${assertToken('host id', hostId)}.${assertToken('component', component)}.${kind}`,
  /** `halyard.events.lifecycle.<host>.>`: every lifecycle event of one host. */
  lifecycleOf: (hostId: string) => `halyard.events.lifecycle.${assertToken('host id', hostId)}.>`,
  gateway: (gatewayId: string, kind: string) =>
    `halyard.events.gateway.${assertToken('gateway id', gatewayId)}.${kind}`,
  discovery: (replicaId: string, kind: string) =>
    `halyard.events.discovery.${assertToken('replica id', replicaId)}.${kind}`,
  /** `$KV.<bucket>.<key>`: where a key is written; a key filter (`orders.*`, `>`) names many. */
  kv: (bucket: BucketName, key: string) => `${kvPrefix(bucket)}.${key}`,
  allDeadLetters: 'halyard.deadletter.>',
  deadLetter: (consumer: string) => `halyard.deadletter.${assertToken('consumer', consumer)}`,
  /**
   * Request/reply control: `halyard.ctl.<component>.<id>.<verb>`. `*` as id fans out: it
   * becomes the token `all`, which every instance of the component also serves (a
   * published subject cannot hold a wildcard).
   */
  control: (component: string, id: string, verb: string) =>
    `${controlOf(component)}.${id === '*' ? CONTROL_ALL : assertToken('id', id)}.${assertToken('verb', verb)}`,
  /** `halyard.ctl.<component>`: the prefix of one component's control requests. */
  controlOf,
  /** `halyard.ctl.<component>.<id>.*`: every verb addressed to one id of a component. */
  controlTo: (component: string, id: string) =>
    `${controlOf(component)}.${assertToken('id', id)}.*`,
  allControl: 'halyard.ctl.>',
} as const;

export const Keys = {
  registry: (serviceId: string, instanceId: string) =>
    `${assertToken('service id', serviceId)}.${assertToken('instance id', instanceId)}`,
  /** All instances of one service (a KV key filter). */
  registryOfService: (serviceId: string) => `${assertToken('service id', serviceId)}.*`,
  affinity: (serviceId: string, userKey: string) =>
    `${assertToken('service id', serviceId)}.${assertUserKey(userKey)}`,
  /** What every affinity key of one service starts with (a user key completes it). */
  affinityPrefix: (serviceId: string) => `${assertToken('service id', serviceId)}.`,
  /** The key a bucket's subject `$KV.<bucket>.<key>` names. */
  bucketKeyOf: (bucket: BucketName, subject: string) => subject.slice(kvPrefix(bucket).length + 1),
  /** The user key of an affinity key (service ids hold no dot). */
  userKeyOf: (affinityKey: string) => affinityKey.slice(affinityKey.indexOf('.') + 1),
  /** Cache keys are any UTF-8 string: base64url keeps them inside the KV key alphabet. */
  cache: (namespace: string, key: string) =>
    `${assertToken('namespace', namespace)}.${Buffer.from(key, 'utf8').toString('base64url')}`,
  /** The children of one host's launcher. */
  launcherChildren: (hostId: string) => assertToken('host id', hostId),
  /** The rollout of one mesh configuration version. */
  rollout: (version: number) => String(version),
  /** One version of the mesh configuration. */
  configVersion: (version: number) => {
    if (!Number.isInteger(version) || version < 1) {
      throw new RangeError(`config version ${version} must be a whole number from 1`);
    }
    return String(version);
  },
  /** The cache key a bucket key holds: `cache` undone. */
  cacheKeyOf: (bucketKey: string) => {
    const dot = bucketKey.indexOf('.');
    return Buffer.from(bucketKey.slice(dot + 1), 'base64url').toString('utf8');
  },
} as const;

/** User keys are HMAC digests in base64url: 43 characters for SHA-256. */
const USER_KEY = /^[A-Za-z0-9_-]{16,128}$/;
export const USER_KEY_PATTERN = USER_KEY;

function assertUserKey(value: string): string {
  if (!USER_KEY.test(value)) throw new RangeError('user key must be a base64url digest');
  return value;
}
