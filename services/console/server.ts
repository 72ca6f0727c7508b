/**
 * The console's HTTP server: the page and its assets (all served from
 * services/console/static, nothing from elsewhere), the model as JSON, a server-sent
 * event stream that pushes every change of the model and every new bus event to the
 * open pages, a replay of a past window of events, and the console's metrics. Read-only
 * but for one door, `POST /api/control` (control.ts), open only when the operator turned
 * control on.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { register } from 'prom-client';
import { type Bus, EVENTS_STREAM, EventSources } from '../../bus/index.js';
import { parseDuration } from '../cli/options.js';
import type { TokenIdentity } from '../common/callers.js';
import type { ServerTls } from '../common/server-tls.js';
import {
  ConsoleAccess,
  ConsoleConfigError,
  checkControl,
  checkExposure,
  TOKEN_COOKIE,
} from './access.js';
import { ConsoleControl } from './control.js';
import { ConsoleLogIds } from './log-ids.js';
import { type ConsoleEvent, ConsoleState } from './state.js';

export interface ConsoleOptions {
  readonly bus: Bus;
  /** `host:port`; port 0 picks a free one. */
  readonly listen: string;
  /** Access tokens by SHA-256; when any is listed, every request needs one. */
  readonly tokens?: readonly TokenIdentity[];
  /** HTTPS; with `requireClientCert`, only holders of a certificate from `clientCaFile` connect. */
  readonly tls?: ServerTls;
  /**
   * Offer the launchers' restart, stop and start to callers with a token; needs `tokens`,
   * and a bus connection whose role may send control requests (operator).
   */
  readonly control?: boolean;
  readonly logger: Logger;
}

export interface Console {
  /** Where to point a browser, e.g. `http://127.0.0.1:9000/`. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Pages are told of model changes at most this often. */
const PUSH_EVERY_MS = 100;
/** Keeps idle event streams open through proxies. */
const HEARTBEAT_MS = 15_000;
/** Events sent to a page when it opens, before the live ones. */
const HISTORY_SENT = 300;
/** A replay returns at most this many events (the newest). */
const REPLAY_MAX = 5000;
/** A replay answers with what it has after this long, whatever is left. */
const REPLAY_MAX_MS = 20_000;

const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

const SECURITY_HEADERS = {
  // Nothing but the console itself: no CDN, no inline script, no framing.
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const;

/** Starts the console on `listen`, fed from `bus`; refuses a non-loopback address without access control. */
export async function startConsole(options: ConsoleOptions): Promise<Console> {
  const { host, port } = parseListen(options.listen);
  const tokens = options.tokens ?? [];
  checkExposure(host, tokens, options.tls);
  checkControl(options.control ?? false, tokens);
  const access = new ConsoleAccess(tokens);
  const control = new ConsoleControl({
    bus: options.bus,
    access,
    enabled: options.control ?? false,
    secure: options.tls !== undefined,
    logger: options.logger,
  });
  const assets = loadAssets();
  const state = await ConsoleState.start(options.bus);
  const pages = new Set<ServerResponse>();

  let pushTimer: NodeJS.Timeout | undefined;
  const pushState = () => {
    if (pushTimer) return;
    pushTimer = setTimeout(() => {
      pushTimer = undefined;
      const frame = sse('state', state.snapshot());
      for (const page of pages) page.write(frame);
    }, PUSH_EVERY_MS);
  };
  const stopChanges = state.onChange(pushState);
  const stopEvents = state.onEvent((event) => {
    const frame = sse('event', event);
    for (const page of pages) page.write(frame);
  });
  const heartbeat = setInterval(() => {
    for (const page of pages) page.write(': ping\n\n');
  }, HEARTBEAT_MS);

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://console');
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    if (req.method === 'POST' && url.pathname === '/api/control') {
      void control.handle(req, res);
      return;
    }
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET', 'content-type': 'text/plain' }).end('read-only\n');
      return;
    }
    if (!access.allows(req, url)) {
      options.logger.warn(
        { msgId: ConsoleLogIds.refused, path: url.pathname, from: req.socket.remoteAddress },
        'console request without a valid access token',
      );
      res
        .writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' })
        .end('the console needs a valid access token: open it as /?token=<token>\n');
      return;
    }
    if (url.searchParams.has('token') && access.tokenCaller(req, url) !== undefined) {
      // Keeps the token for the page's own requests, and out of its address bar.
      res.setHeader(
        'set-cookie',
        `${TOKEN_COOKIE}=${encodeURIComponent(url.searchParams.get('token') ?? '')}; Path=/; HttpOnly; SameSite=Strict${options.tls ? '; Secure' : ''}`,
      );
      if (url.pathname === '/') {
        res.writeHead(303, { location: '/' }).end();
        return;
      }
    }
    const asset = ASSETS[url.pathname];
    if (asset) {
      res
        .writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-cache' })
        .end(assets.get(asset.file));
    } else if (url.pathname === '/api/state') {
      json(res, 200, state.snapshot());
    } else if (url.pathname === '/api/session') {
      json(res, 200, control.session(req));
    } else if (url.pathname === '/metrics') {
      register.metrics().then(
        (body) => res.writeHead(200, { 'content-type': register.contentType }).end(body),
        (error: Error) => res.writeHead(500).end(`${error.message}\n`),
      );
    } else if (url.pathname === '/api/stream') {
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-store',
        connection: 'keep-alive',
      });
      res.write('retry: 2000\n\n');
      res.write(sse('state', state.snapshot()));
      res.write(sse('history', state.recentEvents().slice(-HISTORY_SENT)));
      pages.add(res);
      req.on('close', () => pages.delete(res));
    } else if (url.pathname === '/api/events') {
      replayWindow(options.bus, state, url).then(
        (events) => json(res, 200, events),
        (error: Error) => {
          const usage = error instanceof ConsoleConfigError;
          if (!usage) {
            options.logger.warn({ msgId: ConsoleLogIds.replayFailed, err: error }, 'replay failed');
          }
          json(res, usage ? 400 : 503, { error: error.message });
        },
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  };

  const server = options.tls
    ? createHttpsServer(
        {
          cert: await readFile(options.tls.certFile),
          key: await readFile(options.tls.keyFile),
          ...(options.tls.clientCaFile
            ? {
                ca: await readFile(options.tls.clientCaFile),
                requestCert: true,
                rejectUnauthorized: options.tls.requireClientCert,
              }
            : {}),
        },
        handle,
      )
    : createHttpServer(handle);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, resolve);
    });
  } catch (error) {
    clearInterval(heartbeat);
    await state.stop();
    throw error;
  }
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  const url = `${options.tls ? 'https' : 'http'}://${shownHost}:${bound}/`;
  options.logger.info({ msgId: ConsoleLogIds.listening, url }, 'console listening');
  return {
    url,
    port: bound,
    async close() {
      clearInterval(heartbeat);
      clearTimeout(pushTimer);
      stopChanges();
      stopEvents();
      for (const page of pages) page.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await state.stop();
      options.logger.info({ msgId: ConsoleLogIds.stopped }, 'console stopped');
    },
  };
}

/** `127.0.0.1:9000`, `[::1]:9000`, `:9000` (loopback). */
export function parseListen(listen: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]*):(\d{1,5})$/.exec(listen.trim());
  const port = Number(match?.[2]);
  if (!match || port > 65535) {
    throw new ConsoleConfigError(
      `console: --listen must be host:port, e.g. 127.0.0.1:9000 (got "${listen}")`,
    );
  }
  const host = match[1]!.replace(/^\[|\]$/g, '') || '127.0.0.1';
  return { host, port };
}

function loadAssets(): Map<string, Buffer> {
  const dir = new URL('./static/', import.meta.url);
  return new Map(Object.values(ASSETS).map(({ file }) => [file, readFileSync(new URL(file, dir))]));
}

function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res
    .writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    .end(JSON.stringify(body));
}

/**
 * The stored events of a past window: `since` (a duration: 90s, 10m, 2h) back from now
 * to `until` (default now), of one `type` and `service`/`host` when given.
 */
async function replayWindow(bus: Bus, state: ConsoleState, url: URL): Promise<ConsoleEvent[]> {
  const q = url.searchParams;
  const since = parseDuration(q.get('since') ?? '10m');
  const until = q.get('until') ? parseDuration(q.get('until') ?? '') : 0;
  const type = q.get('type') || undefined;
  if (since === undefined || until === undefined) {
    throw new ConsoleConfigError('since and until are durations: 90s, 10m, 2h, 1d');
  }
  if (type !== undefined && !(EventSources as readonly string[]).includes(type)) {
    throw new ConsoleConfigError(`type is one of ${EventSources.join(', ')}`);
  }
  const [service, host] = [q.get('service') || undefined, q.get('host') || undefined];
  const now = Date.now();
  const end = now - until;
  const stream = (await bus.streams()).find((s) => s.name === EVENTS_STREAM);
  const found: ConsoleEvent[] = [];
  // Nothing stored since the window's start: the subscription would deliver nothing.
  if (!stream?.lastAt || stream.lastAt.getTime() < now - since) return found;
  const last = stream.lastSeq;
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  // Every source is read, so that the stream's last sequence marks the end of the
  // window; the type is filtered here like the rest.
  const subscription = await bus.subscribe(
    { kind: 'events', from: { time: new Date(now - since) } },
    (delivery, meta) => {
      const event = state.describe(delivery, meta);
      const at = Number(event.occurredAtMs) || meta.time.getTime();
      if (
        at <= end &&
        (!type || event.source === type) &&
        (!service || event.service === service) &&
        (!host || event.host === host)
      ) {
        found.push(event);
        if (found.length > REPLAY_MAX) found.shift();
      }
      if (meta.seq >= last) finish();
    },
  );
  const cap = setTimeout(finish, REPLAY_MAX_MS);
  await done;
  clearTimeout(cap);
  await subscription.stop();
  return found;
}
