/**
 * Events on the HALYARD_EVENTS stream: their subjects, their codecs, and a publisher
 * that keeps what a replica decided while the bus is away.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { halyard } from '../proto/gen/halyard.js';
import { type Codec, Codecs, InvalidMessageError, type MessageOrigin } from './codec.js';
import { type Logger, LogIds } from './log.js';
import { busMetrics } from './metrics.js';
import { EVENTS_STREAM, type EventSource, eventSourceOf, Headers, Subjects } from './names.js';
import { retryTransient } from './retry.js';
import type { DiscoveryEvent, GatewayEvent, LifecycleEvent } from './schemas.js';

export type BusEvent =
  | { readonly source: 'lifecycle'; readonly event: LifecycleEvent }
  | { readonly source: 'gateway'; readonly event: GatewayEvent }
  | { readonly source: 'discovery'; readonly event: DiscoveryEvent };

type EventOf<S extends EventSource> = Extract<BusEvent, { source: S }>['event'];

interface EventType<S extends EventSource> {
  readonly codec: Codec<EventOf<S>>;
  subject(event: EventOf<S>): string;
}

/** `STARTED` → `started`: the last token of an event subject. */
function kindTokens(kinds: Record<string, string | number>): Map<number, string> {
  const tokens = new Map<number, string>();
  for (const [name, value] of Object.entries(kinds)) {
    if (typeof value === 'number') tokens.set(value, name.toLowerCase());
  }
  return tokens;
}

const lifecycleKinds = kindTokens(halyard.launcher.v1.LifecycleEvent.Kind);
const gatewayKinds = kindTokens(halyard.gateway.v1.GatewayEvent.Kind);
const discoveryKinds = kindTokens(halyard.discovery.v1.DiscoveryEvent.Kind);

const token = (kinds: Map<number, string>, kind: number) => kinds.get(kind) ?? `kind${kind}`;

const EventTypes: { readonly [S in EventSource]: EventType<S> } = {
  lifecycle: {
    codec: Codecs.lifecycleEvent,
    subject: (e) => Subjects.lifecycle(e.hostId, e.component, token(lifecycleKinds, e.kind)),
  },
  gateway: {
    codec: Codecs.gatewayEvent,
    subject: (e) => Subjects.gateway(e.gatewayId, token(gatewayKinds, e.kind)),
  },
  discovery: {
    codec: Codecs.discoveryEvent,
    subject: (e) => Subjects.discovery(e.replicaId, token(discoveryKinds, e.kind)),
  },
};

export function eventSubject(e: BusEvent): string {
  return (EventTypes[e.source] as EventType<EventSource>).subject(e.event as never);
}

function encodeEvent(e: BusEvent): Uint8Array {
  return (EventTypes[e.source].codec as Codec<unknown>).encode(e.event);
}

/** Decodes a stream message; its source comes from the subject, its type must match the header. */
export function decodeEvent(
  data: Uint8Array,
  origin: MessageOrigin,
  typeHeader: string | undefined,
): BusEvent {
  const source = eventSourceOf(origin.subject);
  if (!source) throw new InvalidMessageError('event', 'the subject names no event source', origin);
  const type = EventTypes[source] as EventType<EventSource>;
  if (typeHeader === undefined) {
    throw new InvalidMessageError(type.codec.typeName, `no ${Headers.type} header`, origin);
  }
  return { source, event: type.codec.decode(data, origin, typeHeader) } as BusEvent;
}

export interface PublishedEvent {
  readonly seq: number;
  /** The stream already held this event id (a republish after a reconnect or retry). */
  readonly duplicate: boolean;
}

export interface EventPublisherOptions {
  /** Events kept while the bus is away; beyond it the oldest are dropped, counted and logged. */
  readonly maxQueued?: number;
}

interface Queued {
  readonly subject: string;
  readonly type: string;
  readonly eventId: string;
  readonly bytes: Uint8Array;
  resolve(ack: PublishedEvent): void;
  reject(error: unknown): void;
}

/**
 * Publishes events in order, one at a time, each retried until the stream takes it.
 * The event id is the `Nats-Msg-Id`, so a retry whose first attempt did land is
 * dropped by the stream as a duplicate instead of stored twice.
 */
export class EventPublisher {
  private readonly queue: Queued[] = [];
  private pumping = false;
  private readonly maxQueued: number;

  constructor(
    private readonly js: JetStreamClient,
    private readonly logger: Logger,
    private readonly signal: AbortSignal,
    options: EventPublisherOptions = {},
  ) {
    this.maxQueued = options.maxQueued ?? 10_000;
  }

  /** Validates and queues the event; resolves when the stream has stored it. */
  async publish(e: BusEvent): Promise<PublishedEvent> {
    const bytes = encodeEvent(e);
    const subject = eventSubject(e);
    return new Promise((resolve, reject) => {
      if (this.queue.length >= this.maxQueued) {
        const dropped = this.queue.shift();
        busMetrics.eventsDropped.inc();
        this.logger.error(
          {
            msgId: LogIds.eventQueueFull,
            subject: dropped?.subject,
            eventId: dropped?.eventId,
            queued: this.maxQueued,
          },
          'event queue full while the bus is away: oldest event dropped',
        );
        dropped?.reject(
          new Error(`event ${dropped.eventId} dropped: queue of ${this.maxQueued} full`),
        );
      }
      const type = EventTypes[e.source].codec.typeName;
      this.queue.push({ subject, type, eventId: e.event.eventId, bytes, resolve, reject });
      void this.pump();
    });
  }

  /** Events waiting for the bus. */
  get pending(): number {
    return this.queue.length;
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (let next = this.queue[0]; next; next = this.queue[0]) {
        try {
          next.resolve(await this.send(next));
        } catch (error) {
          next.reject(error);
        }
        // `publish` may have dropped the head while it was in flight.
        if (this.queue[0] === next) this.queue.shift();
      }
    } finally {
      this.pumping = false;
    }
  }

  private async send(item: Queued): Promise<PublishedEvent> {
    const h = natsHeaders();
    h.set(Headers.type, item.type);
    let failedSince: number | undefined;
    const ack = await retryTransient(
      () => this.js.publish(item.subject, item.bytes, { msgID: item.eventId, headers: h }),
      {
        signal: this.signal,
        onRetry: (error, attempt, delayMs) => {
          failedSince ??= Date.now();
          busMetrics.publishRetries.inc({ target: EVENTS_STREAM });
          if (attempt === 1 || attempt % 10 === 0) {
            this.logger.warn(
              {
                msgId: LogIds.publishRetry,
                target: EVENTS_STREAM,
                subject: item.subject,
                attempt,
                delayMs,
                err: error,
              },
              'event publish failed, retrying',
            );
          }
        },
      },
    );
    if (failedSince !== undefined) {
      this.logger.info(
        {
          msgId: LogIds.publishRecovered,
          target: EVENTS_STREAM,
          subject: item.subject,
          outageMs: Date.now() - failedSince,
        },
        'event publish went through after retries',
      );
    }
    return { seq: ack.seq, duplicate: ack.duplicate };
  }
}
