/**
 * One HTTP/2 client session per instance, shared by every call to it. The session is
 * kept up: lost sessions are re-established with backoff, and while a connect is
 * failing, calls fail fast (the forwarder retries them elsewhere) instead of queueing.
 * A GOAWAY from the instance retires the session for new calls; calls already on it
 * finish there. A link that dies silently (a partition sends no reset) is noticed by
 * pings: a session whose ping goes unanswered is destroyed like a lost connection, and a
 * connect that gets no answer gives up, so calls move elsewhere instead of hanging.
 */
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  type OutgoingHttpHeaders,
} from 'node:http2';
import { isIP, connect as netConnect } from 'node:net';
import { type SecureContextOptions, connect as tlsConnect } from 'node:tls';
import type { Logger } from 'pino';
import { cappedExponential, type ExponentialBackoff } from '../common/backoff.js';
import { GatewayLogIds } from './log-ids.js';
import { gatewayMetrics } from './metrics.js';

export interface UpstreamOptions {
  /** Per-stream and per-session receive windows: large, so one call is not throttled by RTTs. */
  readonly windowBytes: number;
  /** Reconnecting after failed connects; a lost session is reconnected after `baseMs`. */
  readonly reconnect: ExponentialBackoff;
  /** Internal TLS towards instances; h2c when absent. */
  readonly tls?: SecureContextOptions;
}

/** Why a session could not carry a call, in words for logs and error messages. */
export class UpstreamUnavailable extends Error {}

const kLastStreamId = Symbol('halyard.goawayLastStreamId');
type Tagged = ClientHttp2Session & { [kLastStreamId]?: number };

/**
 * The last stream id of the instance's GOAWAY on this session, if it sent one: streams
 * above it were not processed (RFC 9113 §6.8).
 */
export function goawayLastStreamId(session: ClientHttp2Session): number | undefined {
  return (session as Tagged)[kLastStreamId];
}

const PING_INTERVAL_MS = 2000;
const PING_TIMEOUT_MS = 3000;
const CONNECT_TIMEOUT_MS = 3000;

/** Connected sessions across all upstreams, for the sessions gauge. */
export const upstreamStats = { sessions: 0 };

export class Upstream {
  private session: ClientHttp2Session | undefined;
  private failures = 0;
  /** Until then, the last connect failed: calls fail fast. */
  private retryAt = 0;
  /** Why the session last failed, for logs and the messages of calls failed fast. */
  private lastError: Error | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly address: string,
    private readonly options: UpstreamOptions,
    private readonly logger: Logger,
  ) {}

  /**
   * Opens a stream for one attempt. Throws UpstreamUnavailable when the instance cannot
   * be reached right now; the caller retries elsewhere.
   */
  request(headers: OutgoingHttpHeaders): ClientHttp2Stream {
    // The client's header object is reused for the upstream request: no copy per call.
    headers[':scheme'] = this.options.tls ? 'https' : 'http';
    return this.current().request(headers, { endStream: false });
  }

  /** Connects ahead of the first call, so that it does not pay for the handshake. */
  warm(): void {
    if (!this.closed && this.session === undefined && Date.now() >= this.retryAt) this.connect();
  }

  /** Stops reconnecting and closes the session once its calls have finished. */
  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.session?.close();
    this.session = undefined;
  }

  private current(): ClientHttp2Session {
    const session = this.session;
    if (session !== undefined && !session.closed && !session.destroyed) return session;
    if (Date.now() < this.retryAt || this.closed) {
      // Clients see the kind of failure only: the address and errno are in the log.
      throw new UpstreamUnavailable('cannot connect');
    }
    return this.connect();
  }

  private connect(): ClientHttp2Session {
    clearTimeout(this.reconnectTimer);
    const tls = this.options.tls;
    const session = connect(tls ? `https://${this.address}` : `http://${this.address}`, {
      ...tls,
      settings: { initialWindowSize: this.options.windowBytes, enablePush: false },
      createConnection: (url) => {
        const target = { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) };
        const socket = tls
          ? tlsConnect({
              ...tls,
              ...target,
              ALPNProtocols: ['h2'],
              // SNI carries host names only.
              ...(isIP(target.host) ? {} : { servername: target.host }),
            })
          : netConnect(target);
        // Frames of many calls share the socket: Nagle would hold small ones back.
        socket.setNoDelay(true);
        const unanswered = setTimeout(
          () => socket.destroy(new Error(`no answer within ${CONNECT_TIMEOUT_MS} ms`)),
          CONNECT_TIMEOUT_MS,
        );
        socket.once(tls ? 'secureConnect' : 'connect', () => clearTimeout(unanswered));
        socket.once('close', () => clearTimeout(unanswered));
        return socket;
      },
    });
    this.session = session;
    let up = false;
    session.once('connect', () => {
      up = true;
      this.failures = 0;
      this.retryAt = 0;
      upstreamStats.sessions++;
      session.setLocalWindowSize(this.options.windowBytes);
      keepAlive(session);
      gatewayMetrics.upstreamConnects.inc({ result: 'connected' });
      this.logger.info(
        { msgId: GatewayLogIds.upstreamConnected, address: this.address },
        'connected to instance',
      );
    });
    session.on('error', (error: Error) => {
      this.lastError = error;
    });
    session.once('goaway', (code: number, lastStreamId: number) => {
      (session as Tagged)[kLastStreamId] = lastStreamId;
      this.logger.info(
        { msgId: GatewayLogIds.upstreamGoaway, address: this.address, code, lastStreamId },
        'instance sent GOAWAY: new calls go to a new session',
      );
      if (this.session === session) this.session = undefined;
    });
    session.once('close', () => {
      if (up) upstreamStats.sessions--;
      this.lost(session, up);
    });
    // The gateway's listeners keep the process alive, not its upstream sessions.
    session.unref();
    return session;
  }

  private lost(session: ClientHttp2Session, wasUp: boolean): void {
    if (this.session === session) this.session = undefined;
    if (this.closed) return;
    if (wasUp) {
      this.logger.warn(
        { msgId: GatewayLogIds.upstreamLost, address: this.address, err: this.lastError },
        'session to instance lost, reconnecting',
      );
      this.scheduleReconnect(this.options.reconnect.baseMs);
      return;
    }
    this.failures++;
    const delay = cappedExponential(this.options.reconnect, this.failures - 1);
    this.retryAt = Date.now() + delay;
    gatewayMetrics.upstreamConnects.inc({ result: 'failed' });
    if (this.failures === 1 || this.failures % 10 === 0) {
      this.logger.warn(
        {
          msgId: GatewayLogIds.upstreamConnectFailed,
          address: this.address,
          attempt: this.failures,
          retryInMs: delay,
          err: this.lastError,
        },
        'cannot connect to instance',
      );
    }
    this.scheduleReconnect(delay);
  }

  private scheduleReconnect(delay: number): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      if (!this.closed && this.session === undefined) this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }
}

/** Pings the session; one unanswered in time destroys it (its `close` follows). */
function keepAlive(session: ClientHttp2Session): void {
  const timer = setInterval(() => {
    if (session.closed || session.destroyed) return;
    const unanswered = setTimeout(
      () => session.destroy(new Error(`no answer to a ping within ${PING_TIMEOUT_MS} ms`)),
      PING_TIMEOUT_MS,
    );
    unanswered.unref();
    session.ping(() => clearTimeout(unanswered));
  }, PING_INTERVAL_MS);
  timer.unref();
  session.once('close', () => clearInterval(timer));
}
