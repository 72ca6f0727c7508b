/**
 * Who may look at the console. On loopback, anyone on the machine (as with `halyard
 * status`). Anywhere else the console refuses to start unless every request proves
 * itself: by an access token whose SHA-256 the config lists (tokens are hashed on
 * arrival and looked up by digest, never compared or logged as secrets), or by a client
 * certificate the TLS handshake verified against the configured CA. Tokens, when
 * configured, are required whatever the address.
 *
 * Acting (the launchers' control verbs, control.ts) asks more: the operator turned it on,
 * which needs tokens, and the request carries one (a certificate alone looks, never acts).
 */
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { type TokenIdentity, tokenDigest } from '../common/callers.js';
import type { ServerTls } from '../common/server-tls.js';

export const TOKEN_COOKIE = 'halyard_console_token';

export class ConsoleConfigError extends Error {
  override readonly name = 'ConsoleConfigError';
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === '[::1]';
}

/** Throws when the console would serve the bus's state to a network without proof of who asks. */
export function checkExposure(
  host: string,
  tokens: readonly TokenIdentity[],
  tls: ServerTls | undefined,
): void {
  if (isLoopback(host) || tokens.length > 0 || tls?.requireClientCert) return;
  throw new ConsoleConfigError(
    `console: refusing to listen on ${host}, which is not a loopback address, without access control: ` +
      'list access tokens (tokens: [{sha256, identity}] in --config) or require TLS client certificates (tls.clientCaFile and tls.requireClientCert: true), ' +
      'or listen on 127.0.0.1',
  );
}

/** Throws when control is turned on without tokens: nobody could be named for an action. */
export function checkControl(control: boolean, tokens: readonly TokenIdentity[]): void {
  if (!control || tokens.length > 0) return;
  throw new ConsoleConfigError(
    'console: control (restart, stop, start from the page) needs access tokens, so that every action names who asked: ' +
      'list them (tokens: [{sha256, identity}] in --config) or leave control off',
  );
}

/** The caller a listed token names; the digest keys the per-token protections, never the token. */
export interface TokenCaller {
  readonly identity: string;
  readonly digest: string;
}

/** Decides whether a request may see the console. */
export class ConsoleAccess {
  private readonly byDigest: ReadonlyMap<string, string>;

  constructor(tokens: readonly TokenIdentity[]) {
    this.byDigest = new Map(tokens.map((t) => [t.sha256.toLowerCase(), t.identity]));
  }

  /**
   * Whether the request may see the console: always without tokens (loopback, or a
   * listener whose TLS handshake already required a client certificate); else with a
   * verified client certificate or a listed token.
   */
  allows(req: IncomingMessage, url: URL): boolean {
    if (this.byDigest.size === 0) return true;
    if ((req.socket as Partial<TLSSocket>).authorized === true) return true;
    return this.tokenCaller(req, url) !== undefined;
  }

  /**
   * Who the token a request carries names (`Authorization: Bearer`, the console's
   * cookie, or `?token=` on the first page load when `url` is given), undefined when it
   * carries none that the config lists.
   */
  tokenCaller(req: IncomingMessage, url?: URL): TokenCaller | undefined {
    const token = bearer(req) ?? cookie(req, TOKEN_COOKIE) ?? url?.searchParams.get('token');
    if (!token) return undefined;
    const digest = tokenDigest(token);
    const identity = this.byDigest.get(digest);
    return identity === undefined ? undefined : { identity, digest };
  }
}

function bearer(req: IncomingMessage): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return match?.[1];
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return decodeURIComponent(value.join('='));
  }
  return undefined;
}
