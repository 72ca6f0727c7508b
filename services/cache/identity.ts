/**
 * Who is calling: the namespace is the caller's verified identity, never a value it
 * merely claims. Either the subject CN of a client certificate that the TLS handshake
 * verified against the configured CA, or a service token (`authorization: Bearer …`)
 * whose SHA-256 the config lists with its namespace. Tokens are hashed on arrival and
 * never logged or stored.
 */
import { createHash } from 'node:crypto';
import { type Metadata, type ServerUnaryCall, status } from '@grpc/grpc-js';

type ServerSurfaceCall = Pick<ServerUnaryCall<unknown, unknown>, 'metadata' | 'getAuthContext'>;

import { CacheError, checkNamespace } from './rules.js';

/** Metadata a caller may send to say which namespace it expects to act on. */
export const NAMESPACE_HEADER = 'x-halyard-namespace';

export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export class Identities {
  private readonly byDigest: ReadonlyMap<string, string>;

  constructor(tokens: ReadonlyArray<{ sha256: string; namespace: string }>) {
    this.byDigest = new Map(tokens.map((t) => [t.sha256, t.namespace]));
  }

  /** The caller's namespace, or a CacheError (UNAUTHENTICATED, INVALID_ARGUMENT, PERMISSION_DENIED). */
  namespaceOf(call: ServerSurfaceCall): string {
    const fromCert = certificateNamespace(call);
    const fromToken = this.tokenNamespace(call.metadata);
    if (fromCert === undefined && fromToken === undefined) {
      throw new CacheError(
        status.UNAUTHENTICATED,
        'no identity: present a client certificate signed by the configured CA or a service token (authorization: Bearer <token>)',
        'unauthenticated',
      );
    }
    if (fromCert !== undefined && fromToken !== undefined && fromCert !== fromToken) {
      throw new CacheError(
        status.PERMISSION_DENIED,
        `the client certificate (namespace ${fromCert}) and the service token (namespace ${fromToken}) name different namespaces`,
        'permission_denied',
      );
    }
    const namespace = (fromCert ?? fromToken)!;
    const origin = fromCert !== undefined ? 'client certificate subject CN' : 'service token';
    checkNamespace(namespace, origin);
    const claimed = call.metadata.get(NAMESPACE_HEADER)[0];
    if (claimed !== undefined) {
      const name = String(claimed);
      checkNamespace(name, NAMESPACE_HEADER);
      if (name !== namespace) {
        throw new CacheError(
          status.PERMISSION_DENIED,
          `caller's namespace is ${namespace} (${origin}); it may not act on namespace ${name}`,
          'permission_denied',
        );
      }
    }
    return namespace;
  }

  private tokenNamespace(metadata: Metadata): string | undefined {
    const header = metadata.get('authorization')[0];
    if (header === undefined) return undefined;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(String(header));
    if (!match) {
      throw new CacheError(
        status.UNAUTHENTICATED,
        'authorization metadata must be "Bearer <token>"',
        'unauthenticated',
      );
    }
    const namespace = this.byDigest.get(tokenDigest(match[1]!));
    if (namespace === undefined) {
      throw new CacheError(status.UNAUTHENTICATED, 'unknown service token', 'unauthenticated');
    }
    return namespace;
  }
}

/** The subject CN of a client certificate the handshake verified; undefined if none. */
function certificateNamespace(call: ServerSurfaceCall): string | undefined {
  // grpc-js reports a peer certificate only when the TLS socket is authorized.
  const certificate = call.getAuthContext?.()?.sslPeerCertificate;
  if (!certificate) return undefined;
  const cn = certificate.subject?.CN as string | string[] | undefined;
  if (cn === undefined || Array.isArray(cn)) {
    throw new CacheError(
      status.UNAUTHENTICATED,
      'the client certificate must have exactly one subject CN (the namespace)',
      'unauthenticated',
    );
  }
  return cn;
}
