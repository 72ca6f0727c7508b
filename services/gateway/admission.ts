/**
 * Admission: everything a request must pass before it becomes a proxied call. In
 * order: is it gRPC at all (method, content-type, `te`, path), are its headers within
 * the limit, is it for the gateway's own health service, is the gateway ready, is its
 * service routed, is there room under the concurrency cap, is its `grpc-timeout` well
 * formed, and, for the `user` policy, who is calling (a verified bearer JWT).
 *
 * A request that fails a check is answered here (a plain HTTP error when it is not
 * gRPC, a gRPC status otherwise); one that passes is handed to the forwarder.
 */
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Logger } from 'pino';
import { ExposurePolicy } from './exposure.js';
import type { Forwarder } from './forwarding.js';
import { parseTimeout, respondHttp, respondStatus, Status } from './grpc-status.js';
import { Identities, type Identity } from './identity.js';
import { GatewayLogIds } from './log-ids.js';
import { countCall, gatewayMetrics, type MethodStats, MethodStatsCache } from './metrics.js';
import type { Route, RoutingTable } from './routing-table.js';

/** Answers calls to a service the gateway serves itself (`grpc.health.v1.Health`). */
export interface LocalHandler {
  handle(stream: ServerHttp2Stream, method: string): void;
}

export interface AdmissionOptions {
  readonly gatewayId: string;
  /** Calls in flight beyond which new ones get RESOURCE_EXHAUSTED; 0: no limit. */
  readonly maxConcurrentCalls: number;
  /** Upper bound on any call's deadline, also applied to calls without one; 0: none. */
  readonly maxTimeoutMs: number;
  /** Request header list size (HPACK accounting) beyond which a call is refused. */
  readonly maxHeaderListBytes: number;
  readonly table: RoutingTable;
  readonly health: LocalHandler;
  readonly identities: Identities;
  /** Why the gateway takes no calls now (starting, stopping), or undefined. */
  readonly notReady: () => string | undefined;
  readonly forwarder: Forwarder;
  readonly logger: Logger;
}

const HEALTH_SERVICE = 'grpc.health.v1.Health';

export class Admission {
  private readonly stats = new MethodStatsCache();

  constructor(private readonly options: AdmissionOptions) {}

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
    const options = this.options;
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
        options.gatewayId,
      );
      return;
    }
    // SETTINGS_MAX_HEADER_LIST_SIZE is advisory and not enforced by node:http2: check it.
    const headerBytes = headerListSize(headers);
    if (headerBytes > options.maxHeaderListBytes) {
      gatewayMetrics.rejected.inc({ reason: 'header-size' });
      respondStatus(
        stream,
        Status.RESOURCE_EXHAUSTED,
        `request headers are ${headerBytes} bytes, over this gateway's limit of ${options.maxHeaderListBytes}: send less metadata`,
        options.gatewayId,
      );
      return;
    }
    let stats = this.stats.get(path);
    const grpcService = stats ? stats.service : path.slice(1, slash);
    if (grpcService === HEALTH_SERVICE) {
      options.health.handle(stream, path.slice(slash + 1));
      return;
    }
    const notReady = options.notReady();
    if (notReady !== undefined) {
      this.fail(
        stream,
        this.stats.unknown,
        Status.UNAVAILABLE,
        `gateway ${options.gatewayId} ${notReady}`,
      );
      return;
    }
    const route = options.table.route(grpcService);
    if (route === undefined) {
      const exposure = options.table.exposure.of(grpcService);
      if (!exposure.routed) {
        gatewayMetrics.rejected.inc({ reason: `service-${exposure.reason}` });
        this.fail(
          stream,
          this.stats.unknown,
          Status.PERMISSION_DENIED,
          ExposurePolicy.message(grpcService, exposure.reason),
        );
        return;
      }
      this.fail(
        stream,
        this.stats.unknown,
        Status.UNIMPLEMENTED,
        `no service registered for ${grpcService}`,
      );
      return;
    }
    stats ??= this.stats.add(path, grpcService, path.slice(slash + 1));
    if (options.maxConcurrentCalls > 0 && options.forwarder.active >= options.maxConcurrentCalls) {
      this.fail(
        stream,
        stats,
        Status.RESOURCE_EXHAUSTED,
        `gateway ${options.gatewayId} is at its limit of ${options.maxConcurrentCalls} concurrent calls; retry with backoff`,
      );
      return;
    }
    const timeoutMs = this.timeoutOf(headers['grpc-timeout']);
    if (timeoutMs === undefined) {
      this.fail(
        stream,
        stats,
        Status.INTERNAL,
        `malformed grpc-timeout ${JSON.stringify(headers['grpc-timeout'])}: expected up to 8 digits and a unit (H M S m u n)`,
      );
      return;
    }
    if (route.settings.policy === 'user') {
      this.identify(stream, headers, route, stats, timeoutMs);
      return;
    }
    options.forwarder.start(stream, headers, route, stats, timeoutMs, undefined);
  }

  /** The call's deadline: the client's, capped by the gateway's; undefined if malformed. */
  private timeoutOf(header: string | string[] | undefined): number | undefined {
    const cap = this.options.maxTimeoutMs;
    if (typeof header !== 'string') return cap;
    const asked = parseTimeout(header);
    if (asked === undefined) return undefined;
    return cap === 0 || asked < cap ? asked : cap;
  }

  /** The user policy: the caller is the verified `sub` of its bearer token. */
  private identify(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    route: Route,
    stats: MethodStats,
    timeoutMs: number,
  ): void {
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
        this.options.forwarder.start(stream, headers, route, stats, timeoutMs, undefined);
      }
      return;
    }
    const identities = this.options.identities;
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
    this.options.forwarder.start(stream, headers, route, stats, timeoutMs, identity.userKey);
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
  private fail(stream: ServerHttp2Stream, stats: MethodStats, code: number, message: string): void {
    respondStatus(stream, code, message, this.options.gatewayId);
    countCall(stats, code, 0);
  }

  /** Not a gRPC request at all: a plain HTTP error. */
  private reject(
    stream: ServerHttp2Stream,
    reason: string,
    httpStatus: number,
    message: string,
  ): void {
    gatewayMetrics.rejected.inc({ reason });
    this.options.logger.debug({ msgId: GatewayLogIds.badRequest, reason, httpStatus }, message);
    respondHttp(stream, httpStatus, message);
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

function ignore(): void {}
