/**
 * Request/reply control on core NATS (`halyard.ctl.<component>.<id>.<verb>`): a
 * component serves its verbs, an operator asks one instance or every instance at once.
 * Payloads go through the same codecs as everything else on the bus; a failure travels
 * as a `Halyard-Error` header carrying a gRPC status name, so a bus reply and a gRPC call
 * fail the same way.
 */
import {
  type Msg,
  type NatsConnection,
  headers as natsHeaders,
  type Subscription,
} from '@nats-io/transport-node';
import { type Codec, InvalidMessageError } from './codec.js';
import { reportInvalid } from './invalid.js';
import { type Logger, LogIds } from './log.js';
import { Headers } from './names.js';

/** gRPC status names a control handler may answer with. */
export type ControlCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

export class ControlError extends Error {
  override readonly name = 'ControlError';
  constructor(
    readonly code: ControlCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  static parse(header: string): ControlError {
    const colon = header.indexOf(':');
    if (colon < 0) return new ControlError('INTERNAL', header);
    return new ControlError(
      header.slice(0, colon) as ControlCode,
      header.slice(colon + 1).trimStart(),
    );
  }
}

/** How one verb's request and reply are encoded. */
export interface ControlCodecs<Req, Res> {
  readonly request: Codec<Req>;
  readonly reply: Codec<Res>;
}

export type ControlHandler<Req, Res> = (request: Req, subject: string) => Promise<Res>;

/** One responder's answer to a fanned-out request. */
export type ControlReply<Res> =
  | { readonly ok: true; readonly value: Res }
  | { readonly ok: false; readonly error: ControlError };

export interface Served {
  stop(): void;
}

/** Resolves once the server has the subscriptions (other nodes of a cluster learn of them shortly after). */
export async function serve<Req, Res>(
  nc: NatsConnection,
  subjects: readonly string[],
  codecs: ControlCodecs<Req, Res>,
  handler: ControlHandler<Req, Res>,
  logger: Logger,
): Promise<Served> {
  const answer = async (msg: Msg) => {
    let reply: Uint8Array | undefined;
    let failure: ControlError | undefined;
    try {
      const request = codecs.request.decode(
        msg.data,
        { subject: msg.subject },
        msg.headers?.get(Headers.type) || undefined,
      );
      reply = codecs.reply.encode(await handler(request, msg.subject));
    } catch (error) {
      if (error instanceof InvalidMessageError) {
        reportInvalid(logger, 'control', error);
        failure = new ControlError('INVALID_ARGUMENT', error.message);
      } else if (error instanceof ControlError) {
        failure = error;
      } else {
        logger.error(
          { msgId: LogIds.handlerFailed, subject: msg.subject, err: error },
          'control handler failed',
        );
        failure = new ControlError('INTERNAL', (error as Error).message, { cause: error });
      }
    }
    const h = natsHeaders();
    if (failure) h.set(Headers.error, `${failure.code}: ${failure.message}`);
    else h.set(Headers.type, codecs.reply.typeName);
    msg.respond(reply ?? new Uint8Array(), { headers: h });
  };
  const subscriptions: Subscription[] = subjects.map((subject) =>
    nc.subscribe(subject, {
      callback: (error, msg) => {
        if (!error) void answer(msg);
      },
    }),
  );
  await nc.flush();
  return {
    stop: () => {
      for (const s of subscriptions) s.unsubscribe();
    },
  };
}

function requestHeaders(codec: Codec<unknown>) {
  const h = natsHeaders();
  h.set(Headers.type, codec.typeName);
  return h;
}

function decodeReply<Res>(msg: Msg, codec: Codec<Res>): ControlReply<Res> {
  const error = msg.headers?.get(Headers.error);
  if (error) return { ok: false, error: ControlError.parse(error) };
  try {
    const value = codec.decode(
      msg.data,
      { subject: msg.subject },
      msg.headers?.get(Headers.type) || undefined,
    );
    return { ok: true, value };
  } catch (e) {
    return { ok: false, error: new ControlError('INTERNAL', (e as Error).message, { cause: e }) };
  }
}

/** Asks one responder; throws its ControlError, or UNAVAILABLE when nobody answers. */
export async function request<Req, Res>(
  nc: NatsConnection,
  subject: string,
  value: Req,
  codecs: ControlCodecs<Req, Res>,
  timeoutMs: number,
): Promise<Res> {
  let msg: Msg;
  try {
    msg = await nc.request(subject, codecs.request.encode(value), {
      timeout: timeoutMs,
      headers: requestHeaders(codecs.request as Codec<unknown>),
    });
  } catch (error) {
    throw new ControlError('UNAVAILABLE', `${subject}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const reply = decodeReply(msg, codecs.reply);
  if (!reply.ok) throw reply.error;
  return reply.value;
}

/** Asks every responder and collects what arrives within `maxWaitMs`. */
export async function requestMany<Req, Res>(
  nc: NatsConnection,
  subject: string,
  value: Req,
  codecs: ControlCodecs<Req, Res>,
  maxWaitMs: number,
): Promise<Array<ControlReply<Res>>> {
  const replies: Array<ControlReply<Res>> = [];
  const messages = await nc.requestMany(subject, codecs.request.encode(value), {
    strategy: 'timer',
    maxWait: maxWaitMs,
    headers: requestHeaders(codecs.request as Codec<unknown>),
  });
  try {
    for await (const msg of messages) replies.push(decodeReply(msg, codecs.reply));
  } catch (error) {
    // No responders at all is an empty answer, not a failure of the fan-out.
    if (!/no responders/i.test((error as Error).message)) throw error;
  }
  return replies;
}
