/**
 * Reading the events stream: ordered (ephemeral, for tails and replays) or durable
 * (resumes after a crash where it left off). Handlers run one message at a time, so
 * a slow handler slows delivery instead of buffering without bound. A message that
 * does not decode or validate is counted, logged once and skipped.
 */
import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { InvalidMessageError } from './codec.js';
import { type BusEvent, decodeEvent } from './events.js';
import { reportInvalid } from './invalid.js';
import { type Logger, LogIds } from './log.js';
import { EVENTS_STREAM, type EventSource, Headers, Subjects } from './names.js';
import { retryTransient } from './retry.js';

export type StartFrom = 'new' | 'all' | { readonly seq: number } | { readonly time: Date };

export interface SubscribeOptions {
  /** One source (`halyard.events.<source>.>`) or a subject filter inside the stream. */
  readonly source?: EventSource;
  readonly filter?: string;
  /** Default 'new'. A durable that already exists resumes where it left off instead. */
  readonly from?: StartFrom;
  /** A durable consumer name ([A-Za-z0-9_-]): acknowledged after the handler resolves. */
  readonly durable?: string;
  /** Messages fetched ahead of the handler (default 64). */
  readonly prefetch?: number;
  /** Redelivery delay after a handler throws (durable only; default 1 s). */
  readonly retryDelayMs?: number;
}

export interface EventMeta {
  readonly subject: string;
  readonly seq: number;
  readonly time: Date;
  readonly redelivered: boolean;
}

export type EventHandler = (event: BusEvent, meta: EventMeta) => void | Promise<void>;

export interface Subscription {
  stop(): Promise<void>;
  /** Settles when delivery ends (stopped, or the connection closed). */
  readonly done: Promise<void>;
}

function deliverFrom(from: StartFrom): Partial<ConsumerConfig> {
  if (from === 'new') return { deliver_policy: DeliverPolicy.New };
  if (from === 'all') return { deliver_policy: DeliverPolicy.All };
  if ('seq' in from)
    return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from.seq };
  return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: from.time.toISOString() };
}

export async function subscribeEvents(
  js: JetStreamClient,
  jsm: JetStreamManager,
  options: SubscribeOptions,
  handler: EventHandler,
  logger: Logger,
): Promise<Subscription> {
  const filter =
    options.filter ?? (options.source ? Subjects.eventsOf(options.source) : Subjects.allEvents);
  const start = deliverFrom(options.from ?? 'new');
  const max_messages = options.prefetch ?? 64;
  let messages: ConsumerMessages;
  if (options.durable) {
    const exists = await jsm.consumers.info(EVENTS_STREAM, options.durable).catch(() => undefined);
    if (!exists) {
      await jsm.consumers.add(EVENTS_STREAM, {
        durable_name: options.durable,
        ack_policy: AckPolicy.Explicit,
        // 2.9 takes one filter subject as a string; arrays need 2.10.
        filter_subject: filter,
        max_ack_pending: max_messages,
        ack_wait: nanos(30_000),
        ...start,
      });
    }
    const consumer = await js.consumers.get(EVENTS_STREAM, options.durable);
    messages = await consumer.consume({ max_messages });
  } else {
    // Creating the consumer fails while the stream elects a leader; it goes through after.
    const consumer = await retryTransient(() =>
      js.consumers.get(EVENTS_STREAM, { filter_subjects: filter, ...start }),
    );
    messages = await consumer.consume({ max_messages });
  }

  const durable = options.durable !== undefined;
  const retryDelayMs = options.retryDelayMs ?? 1000;
  const deliver = async (m: JsMsg) => {
    const meta: EventMeta = {
      subject: m.subject,
      seq: m.seq,
      time: m.time,
      redelivered: m.redelivered,
    };
    let event: BusEvent;
    try {
      event = decodeEvent(
        m.data,
        { subject: m.subject, seq: m.seq },
        m.headers?.get(Headers.type) || undefined,
      );
    } catch (error) {
      if (!(error instanceof InvalidMessageError)) throw error;
      reportInvalid(logger, EVENTS_STREAM, error);
      if (durable) m.term(error.reason);
      return;
    }
    try {
      await handler(event, meta);
      if (durable) m.ack();
    } catch (error) {
      logger.warn(
        {
          msgId: LogIds.handlerFailed,
          subject: m.subject,
          seq: m.seq,
          err: (error as Error).message,
        },
        durable ? 'event handler failed; redelivering' : 'event handler failed',
      );
      if (durable) m.nak(retryDelayMs);
    }
  };

  const done = (async () => {
    for await (const m of messages) await deliver(m);
  })();
  return {
    done,
    async stop() {
      messages.stop();
      await done;
    },
  };
}
