/**
 * The port clients connect to: HTTP/2 only, h2c with prior knowledge (an HTTP/1.x client
 * gets a plain 505) or TLS with ALPN h2; the connection cap; idle connections closed;
 * and the drain on stop (GOAWAY, then the connections close as their calls finish).
 * Each request stream is handed to `onStream`.
 */
import type { IncomingHttpHeaders } from 'node:http';
import {
  createSecureServer,
  createServer,
  type Http2SecureServer,
  type Http2Server,
  type Http2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import {
  type AddressInfo,
  createServer as createNetServer,
  type Server,
  type Socket,
} from 'node:net';
import type { Logger } from 'pino';
import { sleep } from '../common/sleep.js';
import type { GatewayConfig } from './config.js';
import { GatewayLogIds } from './log-ids.js';
import { gatewayMetrics } from './metrics.js';

/** The client connection preface of HTTP/2 (RFC 9113 §3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const HTTP1_BODY = 'this is a gRPC gateway: it speaks HTTP/2 only (gRPC over h2 or h2c)\n';
const HTTP1_REFUSAL = `HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ${HTTP1_BODY.length}\r\n\r\n${HTTP1_BODY}`;

export interface ClientListenerOptions {
  readonly limits: GatewayConfig['limits'];
  /** The listener's certificate and key; undefined: h2c. */
  readonly tls: { readonly cert: Buffer; readonly key: Buffer } | undefined;
  readonly onStream: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;
  readonly logger: Logger;
}

export class ClientListener {
  private readonly h2: Http2Server | Http2SecureServer;
  /** What accepts connections: the TLS server itself, or the h2c preface sniffer. */
  private readonly server: Server;
  private readonly sessions = new Set<Http2Session>();
  /** Every client connection, HTTP/2 or not (refused HTTP/1.x, failed TLS handshakes). */
  private readonly sockets = new Set<Socket>();
  private draining = false;
  /** Settles once the server has stopped accepting connections; set by `drain`. */
  private closed: Promise<void> | undefined;
  /** Called when the last client session closes while draining. */
  private lastSessionClosed: (() => void) | undefined;

  constructor(private readonly options: ClientListenerOptions) {
    const { limits, tls } = options;
    const settings = {
      maxConcurrentStreams: limits.maxConcurrentStreams,
      maxHeaderListSize: limits.maxHeaderListBytes,
      initialWindowSize: limits.windowBytes,
      enablePush: false,
    };
    if (tls) {
      const secure = createSecureServer({
        ...tls,
        ALPNProtocols: ['h2'],
        settings,
        maxSessionMemory: 64,
      });
      this.h2 = secure;
      this.server = secure;
    } else {
      const plain = createServer({ settings, maxSessionMemory: 64 });
      this.h2 = plain;
      this.server = sniffingServer(plain);
    }
    if (limits.maxConnections > 0) this.server.maxConnections = limits.maxConnections;
    this.wire();
  }

  listen(port: number, host: string): Promise<void> {
    const { server } = this;
    return new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /**
   * Stops accepting connections and sends GOAWAY to every client; resolves true once
   * every client session has closed (their calls finished), false after `timeoutMs`.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.draining = true;
    this.closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) session.close();
    if (this.sessions.size === 0) return true;
    const sessionsClosed = new Promise<true>((resolve) => {
      this.lastSessionClosed = () => resolve(true);
    });
    const timeout = new AbortController();
    const drained = await Promise.race([
      sessionsClosed,
      sleep(timeoutMs, timeout.signal).then(
        () => false,
        () => false,
      ),
    ]);
    timeout.abort();
    return drained;
  }

  /** Destroys the connections left (calls still in flight are cancelled); after `drain`. */
  async close(): Promise<void> {
    for (const session of this.sessions) session.destroy();
    // What is left carries no call: connections that never became HTTP/2 sessions.
    for (const socket of this.sockets) socket.destroy();
    await this.closed;
  }

  private wire(): void {
    const { h2, server, options } = this;
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('drop', () => gatewayMetrics.rejected.inc({ reason: 'connection-limit' }));
    h2.on('stream', (stream: ServerHttp2Stream, headers) => {
      const session = stream.session!;
      openStreams.set(session, (openStreams.get(session) ?? 0) + 1);
      (stream as CountedStream)[kSession] = session;
      stream.on('close', onStreamClose);
      options.onStream(stream, headers);
    });
    const idleMs = options.limits.idleConnectionSeconds * 1000;
    h2.on('session', (session: Http2Session) => {
      this.sessions.add(session);
      session.setLocalWindowSize(options.limits.windowBytes);
      // 'timeout' fires after idleMs without a frame, again after each later activity; a
      // connection with a call open (a quiet stream) is not idle and stays. (A callback
      // given to setTimeout would be called once only.)
      if (idleMs > 0) {
        session.setTimeout(idleMs);
        session.on('timeout', () => closeIfIdle(session));
      }
      session.once('close', () => {
        this.sessions.delete(session);
        if (this.sessions.size === 0) this.lastSessionClosed?.();
      });
      session.on('error', (error: Error) => {
        gatewayMetrics.rejected.inc({ reason: 'session-error' });
        options.logger.warn(
          { msgId: GatewayLogIds.clientSessionError, err: error },
          'client connection failed',
        );
      });
      if (this.draining) session.close();
    });
    h2.on('sessionError', () => {});
    // TLS clients that offered no ALPN at all are HTTP/1.x clients: say what this is.
    // (Those offering only other protocols get TLS's no_application_protocol alert.)
    h2.on('unknownProtocol', (socket: Socket) => refuseHttp1(socket));
    h2.on('tlsClientError', () => gatewayMetrics.rejected.inc({ reason: 'tls' }));
  }
}

/**
 * h2c with prior knowledge only: a connection that does not open with the HTTP/2
 * preface is an HTTP/1.x client and gets a plain 505 instead of binary frames.
 */
function sniffingServer(h2: Http2Server): Server {
  return createNetServer((socket) => {
    let seen: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      if (seen.subarray(0, n).compare(PREFACE, 0, n) !== 0) {
        socket.off('data', onData);
        refuseHttp1(socket);
        return;
      }
      if (seen.length < PREFACE.length) return;
      socket.off('data', onData);
      socket.pause();
      socket.unshift(seen);
      h2.emit('connection', socket);
    };
    socket.on('data', onData);
    socket.on('error', () => {});
    socket.setNoDelay(true);
  });
}

/** Calls open per client connection, for the idle-connection timeout. */
const openStreams = new WeakMap<Http2Session, number>();
/** A stream's session, kept: `stream.session` is gone once the stream is destroyed. */
const kSession = Symbol('halyard.session');
type CountedStream = ServerHttp2Stream & { [kSession]?: Http2Session };

function onStreamClose(this: CountedStream): void {
  const session = this[kSession]!;
  openStreams.set(session, (openStreams.get(session) ?? 1) - 1);
}

function closeIfIdle(session: Http2Session): void {
  if ((openStreams.get(session) ?? 0) > 0) return;
  gatewayMetrics.idleConnectionsClosed.inc();
  session.close();
}

function refuseHttp1(socket: Socket): void {
  gatewayMetrics.rejected.inc({ reason: 'http1' });
  socket.end(HTTP1_REFUSAL);
}
