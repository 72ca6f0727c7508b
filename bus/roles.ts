/**
 * Who may do what on the bus: one NATS permission set per role, built from the names in
 * names.ts so a renamed subject cannot leave a stale grant behind. Each set names the
 * exact subjects a role publishes and subscribes to, including the JetStream API
 * subjects of the streams it reads, the consumers it makes and the direct gets it does.
 * Only `admin` may create, change, purge or delete a stream.
 *
 * A reply to a request (a JetStream ack, a get, a consumer's messages) goes to the
 * asker's inbox: each role has its own inbox prefix, `_INBOX.<role>` (the connection
 * sets it from its role's name), so no role can read the replies sent to another.
 * Answering a control request needs only `allow_responses`.
 */
import { nkeys } from '@nats-io/transport-node';
import {
  type BucketName,
  Buckets,
  CONTROL_ALL,
  DEADLETTER_STREAM,
  EVENTS_STREAM,
  type EventSource,
  inboxPrefix,
  Keys,
  kvStream,
  Subjects,
} from './names.js';

export const Roles = [
  'admin',
  'gateway',
  'discovery',
  'launcher',
  'cache',
  'operator',
  'extender',
] as const;
export type Role = (typeof Roles)[number];

/** A NATS user's `permissions` block. */
export interface Permissions {
  readonly publish: { readonly allow: readonly string[] };
  readonly subscribe: { readonly allow: readonly string[] };
  /** Whether the user may publish to the reply subject of a request it received. */
  readonly allow_responses?: boolean;
}

interface Grant {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
}

const API = '$JS.API';

/**
 * The name of a role's user and files: the role itself, or `launcher-<host>` for a
 * launcher, whose grants are its host's.
 */
export function roleName(role: Role, hostId?: string): string {
  if (role !== 'launcher') return role;
  if (!hostId) throw new RangeError('a launcher role belongs to one host: name it');
  return `launcher-${hostId}`;
}

/** Every JetStream client: the API check at connect, and replies on its own inbox. */
function base(name: string): Grant {
  return { publish: [`${API}.INFO`], subscribe: [`${inboxPrefix(name)}.>`] };
}

/**
 * Reading a stream: its info, ordered and durable consumers (created, read, deleted),
 * message gets and the push consumers' flow control. `filter` narrows the consumers
 * a role may create to the subjects it may read.
 */
function readStream(stream: string, filter = '>'): Grant {
  return {
    publish: [
      `${API}.STREAM.INFO.${stream}`,
      `${API}.STREAM.MSG.GET.${stream}`,
      `${API}.DIRECT.GET.${stream}`,
      `${API}.DIRECT.GET.${stream}.>`,
      // The extended create API carries the consumer's filter in its subject.
      `${API}.CONSUMER.CREATE.${stream}.*.${filter}`,
      `${API}.CONSUMER.CREATE.${stream}.*`,
      `${API}.CONSUMER.DURABLE.CREATE.${stream}.*`,
      `${API}.CONSUMER.INFO.${stream}.*`,
      `${API}.CONSUMER.DELETE.${stream}.*`,
      `${API}.CONSUMER.MSG.NEXT.${stream}.*`,
      `$JS.ACK.${stream}.>`,
      `$JS.FC.${stream}.>`,
    ],
    subscribe: [],
  };
}

function readBucket(bucket: BucketName): Grant {
  return readStream(kvStream(bucket));
}

function writeBucket(bucket: BucketName): Grant {
  return { publish: [Subjects.kv(bucket, '>')], subscribe: [] };
}

/**
 * A launcher's own key in the launchers bucket, and no other: written by publishing to
 * the key's subject, read by a direct get whose subject names the key.
 */
function ownChildren(hostId: string): Grant {
  const stream = kvStream(Buckets.launchers);
  const subject = Subjects.kv(Buckets.launchers, Keys.launcherChildren(hostId));
  return {
    publish: [`${API}.STREAM.INFO.${stream}`, `${API}.DIRECT.GET.${stream}.${subject}`, subject],
    subscribe: [],
  };
}

function publishEvents(source: EventSource): Grant {
  return { publish: [Subjects.eventsOf(source, '>')], subscribe: [] };
}

/** Subscribers that dead-letter what their handler gave up on. */
const deadLetters: Grant = { publish: [Subjects.allDeadLetters], subscribe: [] };

function merge(...grants: Grant[]): Grant {
  return {
    publish: [...new Set(grants.flatMap((g) => g.publish))],
    subscribe: [...new Set(grants.flatMap((g) => g.subscribe))],
  };
}

function permissions(grant: Grant, allowResponses = false): Permissions {
  return {
    publish: { allow: grant.publish },
    subscribe: { allow: grant.subscribe },
    ...(allowResponses ? { allow_responses: true } : {}),
  };
}

/**
 * The permissions of `role`. A launcher's are its host's: `hostId` is required for it
 * and names the only lifecycle events it publishes and replays and the only control
 * requests it answers.
 */
export function rolePermissions(role: Role, hostId?: string): Permissions {
  const own = base(roleName(role, hostId));
  switch (role) {
    case 'admin':
      return permissions({ publish: ['>'], subscribe: ['>'] }, true);
    case 'gateway':
      return permissions(
        merge(
          own,
          readBucket(Buckets.registry),
          readBucket(Buckets.affinity),
          writeBucket(Buckets.affinity),
          publishEvents('gateway'),
          readBucket(Buckets.config),
        ),
      );
    case 'discovery':
      return permissions(
        merge(
          own,
          readBucket(Buckets.registry),
          writeBucket(Buckets.registry),
          publishEvents('discovery'),
          readBucket(Buckets.config),
        ),
      );
    case 'launcher': {
      const lifecycle = Subjects.lifecycleOf(hostId!);
      return permissions(
        merge(
          own,
          { publish: [lifecycle], subscribe: [] },
          readStream(EVENTS_STREAM, lifecycle),
          ownChildren(hostId!),
          // Every launcher joins each configuration version's rollout and takes its turn.
          readBucket(Buckets.rollouts),
          writeBucket(Buckets.rollouts),
          // Launchers probing readiness through discovery mark draining instances.
          readBucket(Buckets.registry),
          writeBucket(Buckets.registry),
          // Every launcher applies its host's part of the mesh configuration.
          readBucket(Buckets.config),
          {
            publish: [],
            subscribe: [
              Subjects.controlTo('launcher', hostId!),
              Subjects.controlTo('launcher', CONTROL_ALL),
            ],
          },
        ),
        true,
      );
    }
    case 'cache':
      return permissions(
        merge(
          own,
          readBucket(Buckets.cache),
          writeBucket(Buckets.cache),
          readBucket(Buckets.config),
        ),
      );
    case 'operator':
      return permissions(
        merge(
          own,
          readStream(EVENTS_STREAM),
          readBucket(Buckets.registry),
          readBucket(Buckets.affinity),
          // `halyard affinity clear` removes preferences.
          writeBucket(Buckets.affinity),
          // `halyard rollout status|resume|abort`.
          readBucket(Buckets.rollouts),
          writeBucket(Buckets.rollouts),
          // `halyard config apply|rollback` publishes versions of the mesh configuration.
          readBucket(Buckets.config),
          writeBucket(Buckets.config),
          {
            publish: [`${API}.STREAM.LIST`, `${API}.STREAM.NAMES`, Subjects.allControl],
            subscribe: [],
          },
        ),
      );
    case 'extender':
      return permissions(
        merge(
          own,
          readStream(EVENTS_STREAM),
          readBucket(Buckets.registry),
          readStream(DEADLETTER_STREAM),
          deadLetters,
          // Leader leases for singleton extenders (lease.ts).
          readBucket(Buckets.leases),
          writeBucket(Buckets.leases),
        ),
      );
  }
}

/**
 * Whether the role a connection uses, named as `roleName` names it (`gateway`,
 * `launcher-<host>`…), may publish to `subject`; undefined for a name that is no role.
 */
export function rolePublishes(name: string, subject: string): boolean | undefined {
  const launcher = /^launcher-(.+)$/.exec(name);
  const permissions = launcher
    ? rolePermissions('launcher', launcher[1])
    : (Roles as readonly string[]).includes(name)
      ? rolePermissions(name as Role)
      : undefined;
  return permissions?.publish.allow.some((allowed) => subjectMatches(allowed, subject));
}

/** NATS subject matching: `*` stands for one token, a final `>` for one or more. */
function subjectMatches(pattern: string, subject: string): boolean {
  const wanted = pattern.split('.');
  const tokens = subject.split('.');
  for (const [i, token] of wanted.entries()) {
    if (token === '>') return tokens.length > i;
    if (i >= tokens.length || (token !== '*' && token !== tokens[i])) return false;
  }
  return wanted.length === tokens.length;
}

/** A new user nkey: the seed is the secret, the public key goes into the server's config. */
export function newUserNkey(): { readonly seed: string; readonly publicKey: string } {
  const pair = nkeys.createUser();
  return {
    seed: new TextDecoder().decode(pair.getSeed()),
    publicKey: pair.getPublicKey(),
  };
}
