/**
 * Who is calling a control API (the cache, discovery's Registry, launcher control): a
 * verified identity, never a value the caller merely claims. Either the subject CN of a
 * client certificate that the TLS handshake verified against the configured CA, or a
 * service token (`authorization: Bearer …`) whose SHA-256 the config lists with its
 * identity. Tokens are hashed on arrival and looked up by digest, so no comparison ever
 * runs over a secret; they are never logged or stored.
 *
 * What an identity may do is each API's own grant table; this module only says who.
 */
import { createHash } from 'node:crypto';
import { type Metadata, type ServerUnaryCall, status } from '@grpc/grpc-js';
import { z } from 'zod';

/** What is read from a call: its metadata and, over TLS, its verified peer certificate. */
export type CallerCall = Pick<ServerUnaryCall<unknown, unknown>, 'metadata' | 'getAuthContext'>;

/** A configured service token: the hex SHA-256 of the token, and whom it identifies. */
export interface TokenIdentity {
  readonly sha256: string;
  readonly identity: string;
}

export interface Caller {
  readonly identity: string;
  /** How the identity was proven, for messages and logs. */
  readonly origin: 'client certificate subject CN' | 'service token';
}

/** A caller that could not be identified: UNAUTHENTICATED, or PERMISSION_DENIED on a mismatch. */
export class CallerError extends Error {
  override readonly name = 'CallerError';
  constructor(
    readonly code: status,
    message: string,
    /** For rejection counters. */
    readonly reason: 'unauthenticated' | 'permission_denied',
  ) {
    super(message);
  }
}

/** A token's SHA-256 as configs list it. */
const tokenSha256 = z
  .string()
  .regex(/^[0-9a-f]{64}$/, 'must be the SHA-256 of the token, 64 lower-case hex digits');

/**
 * A config's `tokens:` list: each a token's SHA-256 and whom it identifies (`key`, by
 * the rule `who`), no digest twice.
 */
export function tokenList<K extends string, S extends z.ZodType<string>>(key: K, who: S) {
  const entry = z.strictObject({ sha256: tokenSha256, [key]: who } as {
    sha256: typeof tokenSha256;
  } & { [P in K]: S });
  return z
    .array(entry)
    .default([])
    .refine(
      (tokens) => distinct((tokens as ReadonlyArray<{ sha256: string }>).map((t) => t.sha256)),
      {
        message: 'the same token digest is listed twice',
      },
    );
}

const distinct = (values: readonly string[]) => new Set(values).size === values.length;

export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The token of `authorization: Bearer <token>`, undefined without the header. */
function bearerToken(metadata: Metadata): string | undefined {
  const header = metadata.get('authorization')[0];
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(String(header));
  if (!match) {
    throw new CallerError(
      status.UNAUTHENTICATED,
      'authorization metadata must be "Bearer <token>"',
      'unauthenticated',
    );
  }
  return match[1]!;
}

export class Callers {
  private readonly byDigest: ReadonlyMap<string, string>;

  constructor(tokens: readonly TokenIdentity[]) {
    this.byDigest = new Map(tokens.map((t) => [t.sha256.toLowerCase(), t.identity]));
  }

  /** The caller's identity, or a CallerError. */
  identify(call: CallerCall): Caller {
    const fromCert = certificateIdentity(call);
    const fromToken = this.tokenIdentity(call.metadata);
    if (fromCert === undefined && fromToken === undefined) {
      throw new CallerError(
        status.UNAUTHENTICATED,
        'no identity: present a client certificate signed by the configured CA or a service token (authorization: Bearer <token>)',
        'unauthenticated',
      );
    }
    if (fromCert !== undefined && fromToken !== undefined && fromCert !== fromToken) {
      throw new CallerError(
        status.PERMISSION_DENIED,
        `the client certificate (${fromCert}) and the service token (${fromToken}) name different identities`,
        'permission_denied',
      );
    }
    return fromCert !== undefined
      ? { identity: fromCert, origin: 'client certificate subject CN' }
      : { identity: fromToken!, origin: 'service token' };
  }

  private tokenIdentity(metadata: Metadata): string | undefined {
    const token = bearerToken(metadata);
    if (token === undefined) return undefined;
    const identity = this.byDigest.get(tokenDigest(token));
    if (identity === undefined) {
      throw new CallerError(status.UNAUTHENTICATED, 'unknown service token', 'unauthenticated');
    }
    return identity;
  }
}

/** The subject CN of a client certificate the handshake verified; undefined if none. */
function certificateIdentity(call: CallerCall): string | undefined {
  // grpc-js reports a peer certificate only when the TLS socket is authorized.
  const certificate = call.getAuthContext?.()?.sslPeerCertificate;
  if (!certificate) return undefined;
  const cn = certificate.subject?.CN as string | string[] | undefined;
  if (cn === undefined || Array.isArray(cn)) {
    throw new CallerError(
      status.UNAUTHENTICATED,
      'the client certificate must have exactly one subject CN (the caller identity)',
      'unauthenticated',
    );
  }
  return cn;
}
