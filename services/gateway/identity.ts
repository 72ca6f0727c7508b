/**
 * Who is calling, for the `user` balancing policy: the `sub` of a bearer JWT that this
 * gateway verified (HS256 secret, RS256/ES256 public keys, JWKS files or URLs), turned
 * into a user key = HMAC-SHA256(mesh secret, [issuer, subject]), base64url. Only the
 * user key leaves this module: the user id and the token are never logged nor written
 * to the bus.
 *
 * A token must carry `exp`, live no longer than the configured maximum, and match the
 * configured `iss` and `aud`. Verified tokens are cached until they expire (bounded),
 * so a user's calls after the first cost one map look-up instead of a signature check.
 */
import { createHmac, createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  importSPKI,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  jwtVerify,
} from 'jose';

export interface IdentitySettings {
  /** Key of the user-key HMAC; the same on every gateway of the mesh. */
  readonly meshSecret: string | undefined;
  readonly hs256Secret?: string | undefined;
  /** PEM files of RS256 or ES256 public keys (SPKI). */
  readonly publicKeyFiles?: readonly string[] | undefined;
  readonly jwksFiles?: readonly string[] | undefined;
  /** Key sets fetched over HTTP(S), cached for `jwksCacheSeconds`, refetched for a new `kid`. */
  readonly jwksUrls?: readonly string[] | undefined;
  readonly jwksCacheSeconds?: number | undefined;
  readonly issuer?: string | undefined;
  readonly audience?: string | undefined;
  /** Longest accepted lifetime: `exp` - `iat` (or - now, without `iat`). Default 24 h. */
  readonly maxLifetimeSeconds?: number | undefined;
}

export type Identity =
  | { readonly ok: true; readonly userKey: string }
  | { readonly ok: false; readonly message: string };

interface Cached {
  readonly identity: Identity;
  readonly expiresAtMs: number;
}

const MAX_CACHED = 100_000;
const BEARER = 'Bearer ';

export class Identities {
  private readonly cache = new Map<string, Cached>();

  private constructor(
    private readonly meshSecret: KeyObject | undefined,
    private readonly keys: Array<KeyObject | Uint8Array | JWTVerifyGetKey>,
    private readonly options: JWTVerifyOptions,
    private readonly maxLifetimeSeconds: number,
  ) {}

  static async load(settings: IdentitySettings): Promise<Identities> {
    const keys: Array<KeyObject | Uint8Array | JWTVerifyGetKey> = [];
    if (settings.hs256Secret) keys.push(new TextEncoder().encode(settings.hs256Secret));
    for (const file of settings.publicKeyFiles ?? []) {
      const pem = await readFile(file, 'utf8');
      const algorithm = createPublicKey(pem).asymmetricKeyType === 'ec' ? 'ES256' : 'RS256';
      keys.push((await importSPKI(pem, algorithm)) as unknown as KeyObject);
    }
    for (const file of settings.jwksFiles ?? []) {
      const jwks = JSON.parse(await readFile(file, 'utf8')) as JSONWebKeySet;
      keys.push(createLocalJWKSet(jwks));
    }
    for (const url of settings.jwksUrls ?? []) {
      keys.push(
        createRemoteJWKSet(new URL(url), {
          cacheMaxAge: (settings.jwksCacheSeconds ?? 600) * 1000,
        }),
      );
    }
    return new Identities(
      settings.meshSecret ? createSecretKey(Buffer.from(settings.meshSecret, 'utf8')) : undefined,
      keys,
      {
        algorithms: ['HS256', 'RS256', 'ES256'],
        requiredClaims: ['sub', 'exp'],
        ...(settings.issuer ? { issuer: settings.issuer } : {}),
        ...(settings.audience ? { audience: settings.audience } : {}),
      },
      settings.maxLifetimeSeconds ?? 86_400,
    );
  }

  /** The claims a token is not checked for (`iss`, `aud`), to warn about at start. */
  get uncheckedClaims(): string[] {
    return [
      ...(this.options.issuer === undefined ? ['iss'] : []),
      ...(this.options.audience === undefined ? ['aud'] : []),
    ];
  }

  /** Whether a user key can be formed at all (a mesh secret and a verification key). */
  get configured(): boolean {
    return this.meshSecret !== undefined && this.keys.length > 0;
  }

  /** The bearer token of an `authorization` header; undefined when there is none. */
  static bearer(authorization: string | string[] | undefined): string | undefined {
    if (typeof authorization !== 'string') return undefined;
    // Anything else than "Bearer <token>" is checked as a token, and fails.
    return authorization.startsWith(BEARER) ? authorization.slice(BEARER.length) : authorization;
  }

  /** The cached outcome for a token, if still valid: the hot path's only cost. */
  cached(token: string): Identity | undefined {
    const hit = this.cache.get(token);
    if (hit === undefined) return undefined;
    if (hit.expiresAtMs <= Date.now()) {
      this.cache.delete(token);
      return undefined;
    }
    return hit.identity;
  }

  /** Verifies a token (signature, `exp` and lifetime, `nbf`, issuer/audience when configured). */
  async verify(token: string): Promise<Identity> {
    const cached = this.cached(token);
    if (cached) return cached;
    if (!this.configured) {
      return {
        ok: false,
        message:
          'this gateway has no user verification configured (affinity.meshSecret and a JWT key)',
      };
    }
    let problem = 'no configured key verifies it';
    for (const key of this.keys) {
      let payload: { sub?: string; exp?: number; iat?: number; iss?: string };
      try {
        ({ payload } = await jwtVerify(
          token,
          key as Parameters<typeof jwtVerify>[1],
          this.options,
        ));
      } catch (error) {
        const found = describe(error);
        // A verdict on the token itself (expired, malformed) beats "another key's type".
        if (problem === 'no configured key verifies it' || !/key|algorithm/.test(found)) {
          problem = found;
        }
        continue;
      }
      // jose checked that both are present, and that `exp` is a number.
      const { sub, exp } = payload as { sub: unknown; exp: number };
      if (typeof sub !== 'string' || sub.length === 0) {
        return { ok: false, message: 'the bearer token has no subject (sub)' };
      }
      const lifetime = exp - (payload.iat ?? Math.floor(Date.now() / 1000));
      if (lifetime > this.maxLifetimeSeconds) {
        return {
          ok: false,
          message: `invalid bearer token: it lives ${lifetime} s, longer than this gateway accepts (${this.maxLifetimeSeconds} s)`,
        };
      }
      const identity: Identity = { ok: true, userKey: this.userKey(payload.iss ?? '', sub) };
      if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(token, { identity, expiresAtMs: exp * 1000 });
      return identity;
    }
    return { ok: false, message: `invalid bearer token: ${problem}` };
  }

  /**
   * HMAC-SHA256(mesh secret, [issuer, subject]), base64url: the only form of a user on
   * the bus. The issuer is part of it: two identity providers may use the same `sub`.
   */
  userKey(issuer: string, subject: string): string {
    if (!this.meshSecret) throw new Error('no mesh secret configured');
    return createHmac('sha256', this.meshSecret)
      .update(JSON.stringify([issuer, subject]), 'utf8')
      .digest('base64url');
  }
}

/** jose's error, without the token or claims it may quote. */
function describe(error: unknown): string {
  const code = (error as { code?: string }).code;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return 'it has expired';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'signature verification failed (wrong key or forged)';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'its algorithm is not accepted (HS256, RS256, ES256 only; unsigned tokens never)';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const { claim, reason } = error as { claim?: string; reason?: string };
      return reason === 'missing'
        ? `it has no "${claim}" claim, which this gateway requires`
        : `its "${claim}" claim is not accepted by this gateway`;
    }
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return 'it is not a well-formed signed JWT';
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'no matching key in the JWKS';
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JOSE_GENERIC':
      return 'the key set could not be fetched';
    default:
      return code
        ? `it could not be verified with this key (${code})`
        : 'it could not be verified with this key or algorithm';
  }
}
