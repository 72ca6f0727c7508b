/**
 * Forwarding: one admitted gRPC call from a client stream to an instance's stream and
 * back. Frames are forwarded as opaque bytes (messages are never decoded) with
 * backpressure both ways. Listeners are shared functions that find their call through
 * a symbol on the stream, so a call allocates its state object and nothing per frame.
 *
 * One request, one execution: an attempt that fails before the instance sent response
 * headers is retried on another instance (replaying the request bytes sent so far,
 * within the deadline and the retry budget) only when the instance provably did not
 * process it (the connection never came up, REFUSED_STREAM, or a GOAWAY whose last
 * stream id is below the call's), or when the service declares the method idempotent
 * (`lb.idempotentMethods`). Otherwise the client is told the call may have run. After
 * response headers a call is never retried.
 *
 * Client headers under `x-halyard-` are the mesh's own and are dropped before
 * forwarding, except `x-halyard-instance` for services of the header policy. An
 * instance's `x-halyard-affinity` (header or trailer) never reaches the client either:
 * affinity-release.ts acts on it.
 */
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  constants,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Logger } from 'pino';
import { AFFINITY_HEADER, type AffinityReleases } from './affinity-release.js';
import { type CallContext, Refusal } from './balancer.js';
import type { Ejector } from './ejection.js';
import type { Endpoint } from './endpoint.js';
import {
  encodeMessage,
  INSTANCE_HEADER,
  resetName,
  respondStatus,
  Status,
  statusOfReset,
} from './grpc-status.js';
import { GatewayLogIds } from './log-ids.js';
import { countCall, gatewayMetrics, type MethodStats } from './metrics.js';
import { RetryBudget } from './retry-budget.js';
import { describeUnavailable, type Route } from './routing-table.js';
import { goawayLastStreamId, UpstreamUnavailable } from './upstream.js';

const { NGHTTP2_CANCEL, HTTP2_FLAG_END_STREAM } = constants as typeof constants & {
  HTTP2_FLAG_END_STREAM?: number;
};
/** END_STREAM flag of a HEADERS frame: the response is trailers-only. */
const END_STREAM = HTTP2_FLAG_END_STREAM ?? 0x1;
const kCall = Symbol('halyard.call');

export interface ForwarderOptions {
  readonly gatewayId: string;
  /** Request bytes kept per call for replay on another instance; beyond, no retry. */
  readonly retryBufferBytes: number;
  readonly maxAttempts: number;
  /** Retries in flight ≤ max(`minConcurrent`, `ratio` × calls in flight). */
  readonly retryBudget: { readonly ratio: number; readonly minConcurrent: number };
  readonly ejector: Ejector;
  /** Where an instance's `x-halyard-affinity` goes. */
  readonly releases: AffinityReleases;
  readonly logger: Logger;
}

/** Runs admitted calls; counts the calls in flight and holds the retry budget they share. */
export class Forwarder {
  /** Calls in flight (a call counts itself in and out). */
  active = 0;
  readonly budget: RetryBudget;

  constructor(readonly options: ForwarderOptions) {
    this.budget = new RetryBudget(
      options.retryBudget.ratio,
      options.retryBudget.minConcurrent,
      () => this.active,
    );
  }

  /** Takes over an admitted call: its first attempt starts now. */
  start(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    route: Route,
    stats: MethodStats,
    timeoutMs: number,
    userKey: string | undefined,
  ): void {
    dropHalyardHeaders(headers, route.settings.policy === 'header');
    new Call(this, stream, headers, route, stats, timeoutMs, userKey).attempt();
  }
}

const HALYARD_HEADER_PREFIX = 'x-halyard-';

/** Clients cannot speak for the mesh: its headers reach instances from the gateway only. */
function dropHalyardHeaders(headers: IncomingHttpHeaders, keepInstance: boolean): void {
  for (const name in headers) {
    if (name.startsWith(HALYARD_HEADER_PREFIX) && !(keepInstance && name === INSTANCE_HEADER)) {
      delete headers[name];
    }
  }
}

type Tagged<S> = S & { [kCall]?: Call };

class Call implements CallContext {
  private readonly started = performance.now();
  private readonly deadline: number;
  private timer: NodeJS.Timeout | undefined;
  private upstream: Tagged<ClientHttp2Stream> | undefined;
  /** The attempt's session: `stream.session` is gone once the stream is closed. */
  private session: ClientHttp2Session | undefined;
  private endpoint: Endpoint | undefined;
  /** Instances already tried by this call; allocated on the first retry only. */
  private tried: Endpoint[] | undefined;
  /** Request chunks sent so far, for replay; undefined once replay is impossible or moot. */
  private replay: Buffer[] | undefined = [];
  private replayBytes = 0;
  private requestEnded = false;
  private responded = false;
  private upstreamEnded = false;
  private holdsRetryToken = false;
  private trailers: Record<string, string> | undefined;
  /** The status the client got; undefined until the call is answered. */
  private status: number | undefined;
  private attempts = 0;
  private lastFailure = '';
  /** The instance's `x-halyard-affinity` was acted on: a second one is only stripped. */
  private releaseTaken = false;

  constructor(
    private readonly forwarder: Forwarder,
    private readonly downstream: Tagged<ServerHttp2Stream>,
    readonly headers: IncomingHttpHeaders,
    private readonly route: Route,
    private readonly stats: MethodStats,
    timeoutMs: number,
    readonly userKey: string | undefined,
  ) {
    forwarder.active++;
    downstream[kCall] = this;
    downstream.on('data', onRequestData);
    downstream.on('end', onRequestEnd);
    downstream.on('drain', onResponseDrain);
    downstream.on('wantTrailers', onWantTrailers);
    downstream.on('close', onDownstreamClose);
    downstream.on('error', ignore);
    this.deadline = timeoutMs > 0 ? Date.now() + timeoutMs : 0;
    if (timeoutMs > 0) this.timer = setTimeout(onDeadline, timeoutMs, this);
  }

  attempt(): void {
    const route = this.route;
    const endpoint = route.balancer.pick(route.endpoints, this.tried, this);
    if (endpoint instanceof Refusal) {
      this.answer(endpoint.code, endpoint.message);
      return;
    }
    if (endpoint === undefined) {
      const why =
        this.attempts === 0
          ? describeUnavailable(route)
          : `no other instance of ${route.serviceId} left to try after: ${this.lastFailure}`;
      this.answer(Status.UNAVAILABLE, why);
      return;
    }
    this.attempts++;
    this.endpoint = endpoint;
    if (this.deadline > 0) {
      const remaining = this.deadline - Date.now();
      if (remaining <= 0) {
        this.answer(Status.DEADLINE_EXCEEDED, this.deadlineMessage());
        return;
      }
      // The instance enforces what is left of the deadline, not the whole of it.
      this.headers['grpc-timeout'] = `${Math.ceil(remaining)}m`;
    }
    let upstream: Tagged<ClientHttp2Stream>;
    try {
      upstream = endpoint.upstream.request(this.headers);
    } catch (error) {
      if (!(error instanceof UpstreamUnavailable)) throw error;
      this.attemptFailed(
        endpoint,
        `${endpoint.id} did not take the call (${error.message})`,
        true,
        true,
      );
      return;
    }
    this.upstream = upstream;
    this.session = upstream.session as ClientHttp2Session;
    upstream[kCall] = this;
    upstream.on('response', onResponse);
    upstream.on('data', onResponseData);
    upstream.on('trailers', onTrailers);
    upstream.on('end', onResponseEnd);
    upstream.on('drain', onRequestDrain);
    upstream.on('close', onUpstreamClose);
    upstream.on('error', ignore);
    let full = false;
    const replay = this.replay;
    if (replay !== undefined) for (const chunk of replay) full = !upstream.write(chunk);
    if (this.requestEnded) upstream.end();
    else if (full) this.downstream.pause();
    // The client's request waited for the failed attempt: this one has room for more.
    else if (this.downstream.isPaused()) this.downstream.resume();
  }

  requestData(chunk: Buffer): void {
    if (this.replay !== undefined) {
      this.replayBytes += chunk.length;
      if (this.replayBytes <= this.forwarder.options.retryBufferBytes) this.replay.push(chunk);
      else this.replay = undefined;
    }
    const upstream = this.upstream;
    if (upstream !== undefined && !upstream.destroyed && !upstream.write(chunk)) {
      this.downstream.pause();
    }
  }

  requestEnd(): void {
    this.requestEnded = true;
    const upstream = this.upstream;
    if (upstream !== undefined && !upstream.destroyed) upstream.end();
  }

  requestDrain(): void {
    this.downstream.resume();
  }

  response(headers: IncomingHttpHeaders, flags: number): void {
    if (this.status !== undefined) return;
    this.responded = true;
    this.replay = undefined;
    this.releaseRetryToken();
    const endpoint = this.endpoint!;
    this.forwarder.options.ejector.success(endpoint);
    headers[INSTANCE_HEADER] = endpoint.id;
    if (headers[AFFINITY_HEADER] !== undefined) this.takeRelease(headers);
    if (flags & END_STREAM) {
      // Trailers-only: the status is in the headers and the call is over.
      this.status = Number(headers['grpc-status'] ?? Status.UNKNOWN);
      this.downstream.respond(headers, { endStream: true });
      return;
    }
    this.downstream.respond(headers, { waitForTrailers: true });
  }

  responseData(chunk: Buffer): void {
    if (!this.downstream.write(chunk)) this.upstream?.pause();
  }

  responseDrain(): void {
    this.upstream?.resume();
  }

  responseEnd(): void {
    // A reset also ends the readable side: only trailers make it a real end ('close'
    // decides otherwise).
    if (this.trailers === undefined) return;
    this.upstreamEnded = true;
    if (this.status === undefined && this.responded) this.finishWith(this.trailers);
  }

  /** Ends a started response with these trailers (sent on `wantTrailers`). */
  private finishWith(trailers: Record<string, string>): void {
    this.trailers = trailers;
    this.status = Number(trailers['grpc-status'] ?? Status.UNKNOWN);
    if (!this.downstream.writableEnded) this.downstream.end();
  }

  sendTrailers(): void {
    this.downstream.sendTrailers(this.trailers ?? {});
  }

  upstreamClosed(upstream: ClientHttp2Stream): void {
    if (upstream !== this.upstream || this.upstreamEnded) return;
    this.upstream = undefined;
    if (this.status !== undefined) return;
    const endpoint = this.endpoint!;
    const service = this.route.serviceId;
    const rstCode = upstream.rstCode ?? 0;
    const session = this.session!;
    const connectionLost = session.destroyed;
    if (this.responded) {
      // After response headers the call is the instance's: never retried.
      let code: number = Status.UNAVAILABLE;
      let message = `connection to instance ${endpoint.id} of ${service} lost mid-call`;
      if (!connectionLost) {
        code = rstCode === constants.NGHTTP2_NO_ERROR ? Status.INTERNAL : statusOfReset(rstCode);
        message =
          rstCode === constants.NGHTTP2_NO_ERROR
            ? `instance ${endpoint.id} of ${service} ended its response without a gRPC status`
            : `instance ${endpoint.id} of ${service} reset the call (${resetName(rstCode)})`;
      }
      this.finishWith({ 'grpc-status': String(code), 'grpc-message': encodeMessage(message) });
      return;
    }
    // Provably not processed: the session never came up, the instance refused the
    // stream, or its GOAWAY said it would not process streams from this one on. A retry
    // then adds no load anywhere (gRPC's transparent retry).
    const lastStreamId = goawayLastStreamId(session);
    const notProcessed =
      session.connecting ||
      rstCode === constants.NGHTTP2_REFUSED_STREAM ||
      (lastStreamId !== undefined && upstream.id !== undefined && upstream.id > lastStreamId);
    if (notProcessed) {
      const why = session.connecting
        ? 'cannot connect'
        : rstCode === constants.NGHTTP2_REFUSED_STREAM
          ? resetName(rstCode)
          : 'GOAWAY before the call';
      this.attemptFailed(endpoint, `${endpoint.id} did not take the call (${why})`, true, true);
      return;
    }
    const failure = connectionLost
      ? `connection to instance ${endpoint.id} of ${service} lost before it answered`
      : `instance ${endpoint.id} of ${service} reset the call before answering (${resetName(rstCode)})`;
    if (!this.route.settings.idempotentMethods.includes(this.method)) {
      // The instance may have run it: running it again elsewhere could do it twice.
      if (connectionLost) this.forwarder.options.ejector.failure(endpoint, failure);
      gatewayMetrics.retriesDenied.inc({ service, reason: 'may have run' });
      this.answer(
        Status.UNAVAILABLE,
        `${failure}; the call may have run, so it was not retried (${this.method} is not in lb.idempotentMethods)`,
      );
      return;
    }
    this.attemptFailed(endpoint, failure, connectionLost, false);
  }

  /** `package.Service/Method`, as `lb.idempotentMethods` names it. */
  private get method(): string {
    return (this.headers[':path'] ?? '').slice(1);
  }

  /**
   * Retries on another instance if the request can be replayed, attempts and deadline
   * remain, and (unless it never reached the instance) the retry budget allows.
   */
  private attemptFailed(
    endpoint: Endpoint,
    reason: string,
    connectionLevel: boolean,
    neverReached: boolean,
  ): void {
    this.releaseRetryToken();
    if (connectionLevel) this.forwarder.options.ejector.failure(endpoint, reason);
    this.lastFailure = reason;
    const service = this.route.serviceId;
    let denied: string | undefined;
    if (this.replay === undefined) denied = 'request too large to replay';
    else if (this.attempts >= this.forwarder.options.maxAttempts) denied = 'attempts exhausted';
    else if (this.deadline > 0 && this.deadline <= Date.now()) denied = 'deadline';
    else if (!neverReached && !this.forwarder.budget.tryAcquire()) denied = 'retry budget spent';
    if (denied !== undefined) {
      gatewayMetrics.retriesDenied.inc({ service, reason: denied });
      if (denied === 'retry budget spent')
        logBudgetSpent(this.forwarder.options.logger, service, reason);
      this.answer(Status.UNAVAILABLE, `${reason}; not retried: ${denied}`);
      return;
    }
    this.holdsRetryToken = !neverReached;
    gatewayMetrics.retries.inc({
      service,
      reason: neverReached ? 'not-reached' : connectionLevel ? 'connection-lost' : 'reset',
    });
    if (this.tried === undefined) this.tried = [endpoint];
    else this.tried.push(endpoint);
    this.attempt();
  }

  /** The gateway's own answer: trailers-only before a response started, else trailers. */
  answer(code: number, message: string): void {
    if (this.status !== undefined) return;
    const upstream = this.upstream;
    this.upstream = undefined;
    if (upstream !== undefined && !upstream.destroyed) upstream.close(NGHTTP2_CANCEL);
    if (this.responded) {
      this.finishWith({ 'grpc-status': String(code), 'grpc-message': encodeMessage(message) });
      return;
    }
    this.status = code;
    respondStatus(this.downstream, code, message, this.forwarder.options.gatewayId);
  }

  deadlineExceeded(): void {
    this.timer = undefined;
    this.answer(Status.DEADLINE_EXCEEDED, this.deadlineMessage());
  }

  private deadlineMessage(): string {
    return `deadline exceeded in the gateway after ${Math.round(performance.now() - this.started)} ms (${this.attempts} attempt(s) on ${this.route.serviceId})`;
  }

  downstreamClosed(): void {
    clearTimeout(this.timer);
    this.releaseRetryToken();
    this.forwarder.active--;
    if (this.status === undefined) {
      // The client went away (RST_STREAM or connection lost): cancel the instance's work.
      this.status = Status.CANCELLED;
      const upstream = this.upstream;
      this.upstream = undefined;
      if (upstream !== undefined && !upstream.destroyed) upstream.close(NGHTTP2_CANCEL);
    }
    countCall(this.stats, this.status, (performance.now() - this.started) / 1000);
  }

  private releaseRetryToken(): void {
    if (this.holdsRetryToken) {
      this.holdsRetryToken = false;
      this.forwarder.budget.release();
    }
  }

  trailersReceived(trailers: IncomingHttpHeaders): void {
    if (trailers[AFFINITY_HEADER] !== undefined) this.takeRelease(trailers);
    this.trailers = trailers as Record<string, string>;
  }

  /** Strips the instance's `x-halyard-affinity` and acts on it (once per call). */
  private takeRelease(headers: IncomingHttpHeaders): void {
    if (this.releaseTaken) {
      delete headers[AFFINITY_HEADER];
      return;
    }
    this.releaseTaken = true;
    this.forwarder.options.releases.take(headers, {
      route: this.route,
      userKey: this.userKey,
      instanceId: this.endpoint!.id,
    });
  }
}

function ignore(): void {}

let budgetLoggedAt = 0;
/** Once a second at most: a spent budget means many calls fail at once. */
function logBudgetSpent(logger: Logger, serviceId: string, reason: string): void {
  const now = Date.now();
  if (now - budgetLoggedAt < 1000) return;
  budgetLoggedAt = now;
  logger.warn(
    { msgId: GatewayLogIds.retryBudgetExhausted, serviceId, reason },
    'retry budget spent: failing calls instead of retrying',
  );
}

function onRequestData(this: Tagged<ServerHttp2Stream>, chunk: Buffer): void {
  this[kCall]!.requestData(chunk);
}
function onRequestEnd(this: Tagged<ServerHttp2Stream>): void {
  this[kCall]!.requestEnd();
}
function onResponseDrain(this: Tagged<ServerHttp2Stream>): void {
  this[kCall]!.responseDrain();
}
function onWantTrailers(this: Tagged<ServerHttp2Stream>): void {
  this[kCall]!.sendTrailers();
}
function onDownstreamClose(this: Tagged<ServerHttp2Stream>): void {
  this[kCall]!.downstreamClosed();
}
function onDeadline(call: Call): void {
  call.deadlineExceeded();
}
function onResponse(
  this: Tagged<ClientHttp2Stream>,
  headers: IncomingHttpHeaders,
  flags: number,
): void {
  this[kCall]!.response(headers, flags);
}
function onResponseData(this: Tagged<ClientHttp2Stream>, chunk: Buffer): void {
  this[kCall]!.responseData(chunk);
}
function onTrailers(this: Tagged<ClientHttp2Stream>, trailers: IncomingHttpHeaders): void {
  this[kCall]!.trailersReceived(trailers);
}
function onResponseEnd(this: Tagged<ClientHttp2Stream>): void {
  this[kCall]!.responseEnd();
}
function onRequestDrain(this: Tagged<ClientHttp2Stream>): void {
  this[kCall]!.requestDrain();
}
function onUpstreamClose(this: Tagged<ClientHttp2Stream>): void {
  this[kCall]!.upstreamClosed(this);
}
