/**
 * The hot path: one gRPC call from a client stream to an instance's stream and back.
 * Frames are forwarded as opaque bytes (messages are never decoded) with backpressure
 * both ways. Listeners are shared functions that find their call through a symbol on
 * the stream, so a call allocates its state object and nothing per frame.
 *
 * An attempt that fails before the instance sent response headers (could not connect,
 * refused, reset, GOAWAY) is retried on another instance within the deadline and the
 * retry budget, replaying the request bytes sent so far; after response headers a
 * call is never retried.
 */
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  constants,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Logger } from 'pino';
import type { Counter, Histogram } from 'prom-client';
import { type CallContext, Refusal } from './balancer.js';
import type { Ejector } from './ejection.js';
import type { Endpoint } from './endpoint.js';
import {
  encodeMessage,
  INSTANCE_HEADER,
  parseTimeout,
  resetName,
  respondHttp,
  respondStatus,
  Status,
  StatusNames,
  statusOfReset,
} from './grpc-status.js';
import { Identities, type Identity } from './identity.js';
import { GatewayLogIds } from './log-ids.js';
import { gatewayMetrics } from './metrics.js';
import type { RetryBudget } from './retry-budget.js';
import { describeUnavailable, type Route, type RoutingTable } from './routing-table.js';
import { UpstreamUnavailable } from './upstream.js';

const { NGHTTP2_CANCEL, HTTP2_FLAG_END_STREAM } = constants as typeof constants & {
  HTTP2_FLAG_END_STREAM?: number;
};
/** END_STREAM flag of a HEADERS frame: the response is trailers-only. */
const END_STREAM = HTTP2_FLAG_END_STREAM ?? 0x1;
const kCall = Symbol('halyard.call');

export interface ProxyOptions {
  readonly gatewayId: string;
  /** Request bytes kept per call for replay on another instance; beyond, no retry. */
  readonly retryBufferBytes: number;
  readonly maxAttempts: number;
  /** Calls in flight beyond which new ones get RESOURCE_EXHAUSTED; 0: no limit. */
  readonly maxConcurrentCalls: number;
  /** Upper bound on any call's deadline, also applied to calls without one; 0: none. */
  readonly maxTimeoutMs: number;
  /** Request header list size (HPACK accounting) beyond which a call is refused. */
  readonly maxHeaderListBytes: number;
}

/** Prepared metric children of one method, so a call does no label hashing. */
interface MethodStats {
  readonly byCode: Array<Counter.Internal | undefined>;
  readonly duration: Histogram.Internal<string>;
  readonly service: string;
  readonly method: string;
}

/** Distinct methods per gRPC service given their own metric labels (clients choose paths). */
const MAX_METHODS_PER_SERVICE = 200;

export interface LocalHandler {
  /** Answers calls to `grpc.health.v1.Health` itself. */
  handle(stream: ServerHttp2Stream, method: string): void;
}

export class GatewayProxy {
  active = 0;
  private readonly methods = new Map<string, MethodStats>();
  private readonly methodsPerService = new Map<string, number>();
  private readonly unknownStats: MethodStats;

  constructor(
    readonly table: RoutingTable,
    readonly budget: RetryBudget,
    readonly ejector: Ejector,
    private readonly health: LocalHandler,
    readonly options: ProxyOptions,
    readonly logger: Logger,
    private readonly notReady: () => string | undefined,
    private readonly identities?: Identities,
  ) {
    this.unknownStats = statsFor('(unknown)', '(unknown)');
  }

  handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const method = headers[':method'];
    if (method !== 'POST') {
      this.reject(stream, 'method', 405, `gRPC calls are POST requests, not ${method}`);
      return;
    }
    const contentType = headers['content-type'];
    if (contentType === undefined || !contentType.startsWith('application/grpc')) {
      this.reject(
        stream,
        'content-type',
        415,
        `this is a gRPC gateway: content-type must be application/grpc, not ${contentType ?? '(none)'}`,
      );
      return;
    }
    if (headers.te !== 'trailers') {
      this.reject(stream, 'te', 400, 'gRPC requests must carry the header "te: trailers"');
      return;
    }
    const path = headers[':path'] ?? '';
    const slash = path.indexOf('/', 1);
    if (
      path.charCodeAt(0) !== 47 ||
      slash < 2 ||
      slash === path.length - 1 ||
      path.indexOf('/', slash + 1) !== -1
    ) {
      gatewayMetrics.rejected.inc({ reason: 'path' });
      respondStatus(
        stream,
        Status.UNIMPLEMENTED,
        `malformed path ${JSON.stringify(path)}: expected /package.Service/Method`,
        this.options.gatewayId,
      );
      return;
    }
    // SETTINGS_MAX_HEADER_LIST_SIZE is advisory and not enforced by node:http2: check it.
    const headerBytes = headerListSize(headers);
    if (headerBytes > this.options.maxHeaderListBytes) {
      gatewayMetrics.rejected.inc({ reason: 'header-size' });
      respondStatus(
        stream,
        Status.RESOURCE_EXHAUSTED,
        `request headers are ${headerBytes} bytes, over this gateway's limit of ${this.options.maxHeaderListBytes}: send less metadata`,
        this.options.gatewayId,
      );
      return;
    }
    let stats = this.methods.get(path);
    const grpcService = stats ? stats.service : path.slice(1, slash);
    if (grpcService === 'grpc.health.v1.Health') {
      this.health.handle(stream, path.slice(slash + 1));
      return;
    }
    const notReady = this.notReady();
    if (notReady !== undefined) {
      this.fail(
        stream,
        this.unknownStats,
        Status.UNAVAILABLE,
        `gateway ${this.options.gatewayId} ${notReady}`,
      );
      return;
    }
    const route = this.table.route(grpcService);
    if (route === undefined) {
      this.fail(
        stream,
        this.unknownStats,
        Status.UNIMPLEMENTED,
        `no service registered for ${grpcService}`,
      );
      return;
    }
    stats ??= this.statsOf(path, grpcService, slash);
    if (this.options.maxConcurrentCalls > 0 && this.active >= this.options.maxConcurrentCalls) {
      this.fail(
        stream,
        stats,
        Status.RESOURCE_EXHAUSTED,
        `gateway ${this.options.gatewayId} is at its limit of ${this.options.maxConcurrentCalls} concurrent calls; retry with backoff`,
      );
      return;
    }
    let timeoutMs = this.options.maxTimeoutMs;
    const timeout = headers['grpc-timeout'];
    if (typeof timeout === 'string') {
      const asked = parseTimeout(timeout);
      if (asked === undefined) {
        this.fail(
          stream,
          stats,
          Status.INTERNAL,
          `malformed grpc-timeout ${JSON.stringify(timeout)}: expected up to 8 digits and a unit (H M S m u n)`,
        );
        return;
      }
      if (timeoutMs === 0 || asked < timeoutMs) timeoutMs = asked;
    }
    if (route.settings.policy !== 'user') {
      new Call(this, stream, headers, route, stats, timeoutMs, undefined).attempt();
      return;
    }
    // The user policy: the caller is the verified `sub` of its bearer token.
    const token = Identities.bearer(headers.authorization);
    if (token === undefined) {
      if (route.settings.requireUser) {
        this.unauthenticated(
          stream,
          stats,
          route,
          `${route.serviceId} requires a user (lb.requireUser): send "authorization: Bearer <JWT>"`,
        );
      } else {
        new Call(this, stream, headers, route, stats, timeoutMs, undefined).attempt();
      }
      return;
    }
    const identities = this.identities;
    if (identities === undefined) {
      this.unauthenticated(stream, stats, route, 'this gateway verifies no user tokens');
      return;
    }
    const known = identities.cached(token);
    if (known !== undefined) {
      this.withIdentity(known, stream, headers, route, stats, timeoutMs);
      return;
    }
    // The stream stays paused (no 'data' listener) until the token is checked.
    stream.on('error', ignore);
    void identities.verify(token).then((identity) => {
      if (stream.destroyed || stream.closed) return;
      this.withIdentity(identity, stream, headers, route, stats, timeoutMs);
    });
  }

  private withIdentity(
    identity: Identity,
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    route: Route,
    stats: MethodStats,
    timeoutMs: number,
  ): void {
    if (!identity.ok) {
      this.unauthenticated(stream, stats, route, identity.message);
      return;
    }
    new Call(this, stream, headers, route, stats, timeoutMs, identity.userKey).attempt();
  }

  private unauthenticated(
    stream: ServerHttp2Stream,
    stats: MethodStats,
    route: Route,
    message: string,
  ): void {
    gatewayMetrics.affinityRejections.labels(route.serviceId, 'unauthenticated').inc();
    this.fail(stream, stats, Status.UNAUTHENTICATED, message);
  }

  /** Ends a call the gateway answers itself, counted like any other call. */
  fail(stream: ServerHttp2Stream, stats: MethodStats, code: number, message: string): void {
    respondStatus(stream, code, message, this.options.gatewayId);
    countCall(stats, code, 0);
  }

  private reject(
    stream: ServerHttp2Stream,
    reason: string,
    httpStatus: number,
    message: string,
  ): void {
    gatewayMetrics.rejected.inc({ reason });
    this.logger.debug({ msgId: GatewayLogIds.badRequest, reason, httpStatus }, message);
    respondHttp(stream, httpStatus, message);
  }

  private statsOf(path: string, service: string, slash: number): MethodStats {
    const count = this.methodsPerService.get(service) ?? 0;
    if (count >= MAX_METHODS_PER_SERVICE) return statsFor(service, '(other)');
    const stats = statsFor(service, path.slice(slash + 1));
    this.methods.set(path, stats);
    this.methodsPerService.set(service, count + 1);
    return stats;
  }
}

/** RFC 9113 §6.5.2: name and value octets plus 32 per field. */
function headerListSize(headers: IncomingHttpHeaders): number {
  let size = 0;
  for (const name in headers) {
    const value = headers[name];
    size += name.length + 32;
    if (typeof value === 'string') size += value.length;
    else if (value !== undefined) for (const v of value) size += v.length + 32;
  }
  return size;
}

function statsFor(service: string, method: string): MethodStats {
  return {
    byCode: [],
    duration: gatewayMetrics.duration.labels(service, method),
    service,
    method,
  };
}

function countCall(stats: MethodStats, code: number, seconds: number): void {
  let counter = stats.byCode[code];
  if (counter === undefined) {
    counter = gatewayMetrics.requests.labels(
      stats.service,
      stats.method,
      StatusNames[code] ?? String(code),
    );
    stats.byCode[code] = counter;
  }
  counter.inc();
  stats.duration.observe(seconds);
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

  constructor(
    private readonly proxy: GatewayProxy,
    private readonly downstream: Tagged<ServerHttp2Stream>,
    readonly headers: IncomingHttpHeaders,
    private readonly route: Route,
    private readonly stats: MethodStats,
    timeoutMs: number,
    readonly userKey: string | undefined,
  ) {
    proxy.active++;
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
      this.attemptFailed(endpoint, error.message, true, true);
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
    const replay = this.replay;
    if (replay !== undefined) for (const chunk of replay) upstream.write(chunk);
    if (this.requestEnded) upstream.end();
  }

  requestData(chunk: Buffer): void {
    if (this.replay !== undefined) {
      this.replayBytes += chunk.length;
      if (this.replayBytes <= this.proxy.options.retryBufferBytes) this.replay.push(chunk);
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
    this.proxy.ejector.success(endpoint);
    headers[INSTANCE_HEADER] = endpoint.id;
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
    // The session never came up, or the instance refused the stream: the request was
    // never processed, so a retry adds no load anywhere (gRPC's transparent retry).
    const neverReached = session.connecting || rstCode === constants.NGHTTP2_REFUSED_STREAM;
    if (neverReached) {
      this.attemptFailed(
        endpoint,
        `${endpoint.id} did not take the call (${connectionLost ? 'cannot connect' : resetName(rstCode)})`,
        true,
        true,
      );
    } else if (connectionLost) {
      this.attemptFailed(
        endpoint,
        `connection to ${endpoint.id} lost before it answered`,
        true,
        false,
      );
    } else {
      this.attemptFailed(
        endpoint,
        `${endpoint.id} reset the call before answering (${resetName(rstCode)})`,
        false,
        false,
      );
    }
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
    if (connectionLevel) this.proxy.ejector.failure(endpoint, reason);
    this.lastFailure = reason;
    const service = this.route.serviceId;
    let denied: string | undefined;
    if (this.replay === undefined) denied = 'request too large to replay';
    else if (this.attempts >= this.proxy.options.maxAttempts) denied = 'attempts exhausted';
    else if (this.deadline > 0 && this.deadline <= Date.now()) denied = 'deadline';
    else if (!neverReached && !this.proxy.budget.tryAcquire()) denied = 'retry budget spent';
    if (denied !== undefined) {
      gatewayMetrics.retriesDenied.inc({ service, reason: denied });
      if (denied === 'retry budget spent') logBudgetSpent(this.proxy.logger, service, reason);
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
    respondStatus(this.downstream, code, message, this.proxy.options.gatewayId);
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
    this.proxy.active--;
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
      this.proxy.budget.release();
    }
  }

  trailersReceived(trailers: IncomingHttpHeaders): void {
    this.trailers = trailers as Record<string, string>;
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
