/**
 * The subscriber SDK: typed, decoded, validated deliveries of registrations, affinity
 * preferences and events, ordered (ephemeral: tails and replays) or durable (resumes
 * after a crash where it left off).
 *
 * Handlers run one message at a time, in stream order, and a bounded number is
 * fetched ahead, so a slow handler slows delivery instead of buffering without bound.
 * A durable message is acknowledged only after its handler resolves; a durable that
 * resumes after a crash starts again at its first unacknowledged message. A message
 * whose handler keeps failing, or that does not decode or validate, goes to the
 * dead-letter stream with its reason (durable) and the subscription carries on.
 *
 * A group is a durable shared by replicas: each message goes to one of them, and the
 * messages a replica held when it died go to the others once their ack wait is over.
 * Order is kept within a replica only, so a handler whose effect must happen once keys
 * it on the message's sequence in state the replicas share (a KV create, a unique
 * row): a redelivery then finds its effect already there, whichever replica made it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerMessages,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { nanos, headers as natsHeaders } from '@nats-io/transport-node';
import { AffinityBucket, type BucketSpec, RegistryBucket } from './buckets.js';
import { InvalidMessageError } from './codec.js';
import { type BusEvent, decodeEvent } from './events.js';
import { reportInvalid } from './invalid.js';
import { type Logger, LogIds } from './log.js';
import { busMetrics } from './metrics.js';
import {
  DeadLetterHeaders,
  EVENTS_STREAM,
  type EventSource,
  Headers,
  Keys,
  kvStream,
  Subjects,
} from './names.js';
import { retryTransient } from './retry.js';
import type { AffinityPreference, ServiceInstance } from './schemas.js';

/** A change of one key of a bucket. */
export type KvChange<T> =
  | { readonly op: 'put'; readonly key: string; readonly value: T }
  | { readonly op: 'delete'; readonly key: string };

export type SubscriptionKind = 'registrations' | 'affinity' | 'events' | EventSource;

export type Delivery<K extends SubscriptionKind> = K extends 'registrations'
  ? KvChange<ServiceInstance>
  : K extends 'affinity'
    ? KvChange<AffinityPreference>
    : K extends EventSource
      ? Extract<BusEvent, { source: K }>
      : BusEvent;

export type StartFrom = 'new' | 'all' | { readonly seq: number } | { readonly time: Date };

export interface SubscribeOptions<K extends SubscriptionKind> {
  readonly kind: K;
  /**
   * Subject tokens after the kind's prefix: a key filter for buckets (`orders.*`), the
   * tokens after `halyard.events.<source>.` for events (`host-a.>`). Default `>`.
   */
  readonly filter?: string;
  /** Default 'new'. A durable that already exists resumes where it left off instead. */
  readonly from?: StartFrom;
  /** Durable consumer name ([A-Za-z0-9_-]); without it (and `group`) the subscription is ordered and ephemeral. */
  readonly durable?: string;
  /**
   * Name of a durable consumer that every replica naming it shares ([A-Za-z0-9_-]): each
   * message is handled by one of them, at least once, in no order across replicas.
   * Instead of `durable`.
   */
  readonly group?: string;
  /** Messages fetched ahead of the handler (default 64). */
  readonly prefetch?: number;
  /** Attempts at a failing message before it is dead-lettered (durable) or skipped (default 5). */
  readonly maxAttempts?: number;
  /** Delay before the handler is tried again after it throws (default 1 s). */
  readonly retryDelayMs?: number;
  /** Durable: unacknowledged messages of a crashed subscriber are redelivered after this (default 10 s). */
  readonly ackWaitMs?: number;
}

export interface DeliveryMeta {
  /** Stream sequence (for buckets: the revision). Handlers that must be idempotent key on it. */
  readonly seq: number;
  readonly subject: string;
  readonly time: Date;
  /** How many times this message has been delivered, 1 for the first. */
  readonly attempt: number;
}

export type Handler<K extends SubscriptionKind> = (
  delivery: Delivery<K>,
  meta: DeliveryMeta,
) => void | Promise<void>;

export interface Subscription {
  stop(): Promise<void>;
  /** Settles when delivery ends (stopped, or the connection closed). */
  readonly done: Promise<void>;
}

/** Where a kind's messages live and how one is decoded. */
interface Feed {
  readonly stream: string;
  /** The subjects of the kind's messages under a filter of its tokens (`SubscribeOptions.filter`). */
  subjects(filter: string): string;
  decode(m: JsMsg): unknown;
}

function bucketFeed<T>(spec: BucketSpec<T>): Feed {
  return {
    stream: kvStream(spec.name),
    subjects: (filter) => Subjects.kv(spec.name, filter),
    decode(m): KvChange<T> {
      const key = Keys.bucketKeyOf(spec.name, m.subject);
      const op = m.headers?.get(Headers.kvOperation);
      if (op === 'DEL' || op === 'PURGE') return { op: 'delete', key };
      return { op: 'put', key, value: spec.codec.decode(m.data, { subject: key, seq: m.seq }) };
    },
  };
}

function eventFeed(subjects: (filter: string) => string): Feed {
  return {
    stream: EVENTS_STREAM,
    subjects,
    decode: (m) =>
      decodeEvent(
        m.data,
        { subject: m.subject, seq: m.seq },
        m.headers?.get(Headers.type) || undefined,
      ),
  };
}

function feedOf(kind: SubscriptionKind): Feed {
  switch (kind) {
    case 'registrations':
      return bucketFeed(RegistryBucket);
    case 'affinity':
      return bucketFeed(AffinityBucket);
    case 'events':
      return eventFeed(Subjects.events);
    default:
      return eventFeed((filter) => Subjects.eventsOf(kind, filter));
  }
}

function deliverFrom(from: StartFrom): Partial<ConsumerConfig> {
  if (from === 'new') return { deliver_policy: DeliverPolicy.New };
  if (from === 'all') return { deliver_policy: DeliverPolicy.All };
  if ('seq' in from)
    return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from.seq };
  return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: from.time.toISOString() };
}

/**
 * How long one pull waits. The server sends heartbeats at half of it and the client
 * resets a consumer after two missed ones: the client's default (30 s) left a
 * subscription whose server died silent for up to a minute; this bounds it to seconds,
 * for one small pull request every few seconds per idle subscription.
 */
const PULL_EXPIRES_MS = 5000;
/** How often a replay that received nothing lately asks whether anything is left. */
const REPLAY_IDLE_CHECK_MS = 1000;

export async function subscribe<K extends SubscriptionKind>(
  js: JetStreamClient,
  jsm: JetStreamManager,
  options: SubscribeOptions<K>,
  handler: Handler<K>,
  logger: Logger,
  signal: AbortSignal,
): Promise<Subscription> {
  const feed = feedOf(options.kind);
  const filter = feed.subjects(options.filter ?? '>');
  const start = deliverFrom(options.from ?? 'new');
  const max_messages = options.prefetch ?? 64;
  if (options.durable && options.group) {
    throw new RangeError('a subscription is either durable or in a group, not both');
  }
  const group = options.group;
  const durable = options.durable ?? group;
  const maxAttempts = options.maxAttempts ?? 5;
  const retryDelayMs = options.retryDelayMs ?? 1000;
  const ackWaitMs = options.ackWaitMs ?? 10_000;

  const open = async (): Promise<ConsumerMessages> => {
    if (!durable) {
      const consumer = await js.consumers.get(feed.stream, { filter_subjects: filter, ...start });
      return consumer.consume({ max_messages, expires: PULL_EXPIRES_MS });
    }
    const config: Partial<ConsumerConfig> = {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      filter_subject: filter,
      // A group's limit is shared by its replicas: the server's default (1000) leaves
      // each its prefetch, which its pulls bound anyway.
      ...(group ? {} : { max_ack_pending: max_messages }),
      ack_wait: nanos(ackWaitMs),
    };
    const existing = await jsm.consumers.info(feed.stream, durable).catch((error: unknown) => {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound)
        return undefined;
      throw error;
    });
    if (!existing) {
      // Creating it twice with one config is a no-op: replicas starting together agree.
      await jsm.consumers.add(feed.stream, { ...config, ...start });
    } else if (!group && existing.num_ack_pending > 0) {
      // A crashed subscriber left messages unacknowledged. The server would redeliver
      // them after later ones; resuming at the first of them keeps the order, which
      // is what lets a handler skip what it has already applied by sequence. A group's
      // consumer is never reset so: the other replicas are using it.
      await jsm.consumers.delete(feed.stream, durable);
      await jsm.consumers.add(feed.stream, {
        ...config,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: existing.ack_floor.stream_seq + 1,
      });
    }
    return (await js.consumers.get(feed.stream, durable)).consume({
      max_messages,
      expires: PULL_EXPIRES_MS,
    });
  };
  // Creating a consumer needs the stream's leader: wait out an election.
  const messages = await retryTransient(open, { signal });

  const deadLetter = async (m: JsMsg, reason: string) => {
    const h = natsHeaders();
    for (const [name, values] of m.headers ?? []) for (const v of values) h.append(name, v);
    h.set(DeadLetterHeaders.reason, reason.slice(0, 1024));
    h.set(DeadLetterHeaders.subject, m.subject);
    h.set(DeadLetterHeaders.seq, String(m.seq));
    h.set(DeadLetterHeaders.stream, feed.stream);
    // Deduplicated per message, so a crash between this publish and the term is harmless.
    h.set(Headers.msgId, `${feed.stream}:${m.seq}:${durable}`);
    await retryTransient(() =>
      js.publish(Subjects.deadLetter(durable as string), m.data, { headers: h }),
    );
    busMetrics.deadLettered.inc({ consumer: durable as string });
    // The server's termination advisory says where the message went; why is in the
    // dead letter's headers, for readers the dead-letter stream admits.
    m.term(`dead-lettered to ${Subjects.deadLetter(durable as string)}`);
  };

  let lastAckedSeq = 0;
  let lastAck: Promise<unknown> = Promise.resolve();
  const deliver = async (m: JsMsg) => {
    let delivery: Delivery<K>;
    try {
      delivery = feed.decode(m) as Delivery<K>;
    } catch (error) {
      if (!(error instanceof InvalidMessageError)) throw error;
      reportInvalid(logger, feed.stream, error);
      if (durable) await deadLetter(m, error.message);
      return;
    }
    inHand = m;
    try {
      // Retried in place, so later messages wait: delivery order is never broken.
      for (let attempt = m.info.deliveryCount; ; attempt++) {
        try {
          await handler(delivery, { seq: m.seq, subject: m.subject, time: m.time, attempt });
          if (group) {
            // The group's ack floor also waits on the other replicas' messages, so this
            // replica awaits the server's receipt of its own last ack (acks are taken
            // in order: that one confirms the earlier ones).
            lastAck = m.ackAck().catch(() => false);
          } else if (durable) {
            m.ack();
            lastAckedSeq = m.seq;
          }
          return;
        } catch (error) {
          const last = attempt >= maxAttempts;
          logger.warn(
            {
              msgId: LogIds.handlerFailed,
              subject: m.subject,
              seq: m.seq,
              attempt,
              err: error,
            },
            last
              ? durable
                ? 'handler failed for the last time; dead-lettering'
                : 'handler failed for the last time; skipped'
              : 'handler failed; retrying',
          );
          if (last) {
            if (durable) await deadLetter(m, `handler failed: ${(error as Error).message}`);
            return;
          }
          await sleep(retryDelayMs);
        }
      }
    } finally {
      inHand = undefined;
    }
  };
  // A long handler keeps its message (the server would redeliver it after ack_wait).
  // One timer for the subscription, not one per message: a message is only reported
  // as in progress if it is still in hand a full half-period later.
  let inHand: JsMsg | undefined;
  let seen: JsMsg | undefined;
  const keepAlive = durable
    ? setInterval(() => {
        if (inHand && inHand === seen) inHand.working();
        seen = inHand;
      }, ackWaitMs / 4)
    : undefined;
  keepAlive?.unref();

  const done = (async () => {
    try {
      for await (const m of messages) await deliver(m);
    } finally {
      clearInterval(keepAlive);
    }
  })();
  return {
    done,
    async stop() {
      messages.stop();
      await done;
      await lastAck;
      // Acks are fire-and-forget: wait (briefly) until the server has taken the last
      // one, so that a graceful stop leaves nothing handled to deliver again.
      const deadline = Date.now() + 2000;
      while (durable && !group && lastAckedSeq > 0 && Date.now() < deadline) {
        const info = await jsm.consumers.info(feed.stream, durable).catch(() => undefined);
        if (!info || info.ack_floor.stream_seq >= lastAckedSeq) break;
        await sleep(10);
      }
    },
  };
}

export interface ReplayOptions<K extends SubscriptionKind> {
  readonly kind: K;
  /** As in SubscribeOptions. */
  readonly filter?: string;
}

/**
 * Delivers every stored message of a kind under the filter, in order, and resolves
 * with their count once it has caught up with what was stored when it started: how a
 * component rebuilds its own past (a launcher finding the children it left behind).
 */
export async function replay<K extends SubscriptionKind>(
  js: JetStreamClient,
  jsm: JetStreamManager,
  options: ReplayOptions<K>,
  handler: Handler<K>,
  logger: Logger,
  signal: AbortSignal,
): Promise<number> {
  const feed = feedOf(options.kind);
  const filter = feed.subjects(options.filter ?? '>');
  const info = await retryTransient(
    () => jsm.streams.info(feed.stream, { subjects_filter: filter }),
    {
      signal,
    },
  );
  const stored = Object.values(info.state.subjects ?? {}).reduce((sum, n) => sum + n, 0);
  if (stored === 0) return 0;
  const consumer = await retryTransient(
    () =>
      js.consumers.get(feed.stream, { filter_subjects: filter, deliver_policy: DeliverPolicy.All }),
    { signal },
  );
  const messages = await consumer.consume({ max_messages: 256, expires: PULL_EXPIRES_MS });
  let replayed = 0;
  let lastSeq = 0;
  // Messages may lapse (max age) after the count above: when nothing arrives for a
  // while, the consumer says whether anything is left to deliver; if not, the replay is
  // over rather than waiting for messages that are gone.
  const idle = setInterval(async () => {
    try {
      const left = await consumer.info();
      if (left.num_pending === 0 && left.delivered.stream_seq <= lastSeq) messages.stop();
    } catch {
      // Asked again on the next tick.
    }
  }, REPLAY_IDLE_CHECK_MS);
  for await (const m of messages) {
    lastSeq = m.seq;
    try {
      const delivery = feed.decode(m) as Delivery<K>;
      await handler(delivery, { seq: m.seq, subject: m.subject, time: m.time, attempt: 1 });
      replayed++;
    } catch (error) {
      if (!(error instanceof InvalidMessageError)) throw error;
      reportInvalid(logger, feed.stream, error);
    }
    // Pending counts what matched the filter after this message when it was sent.
    if (m.info.pending === 0) break;
  }
  clearInterval(idle);
  messages.stop();
  return replayed;
}
