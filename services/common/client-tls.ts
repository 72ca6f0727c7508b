/**
 * Channel credentials for a client of a control API (discovery's Registry, the cache,
 * launcher control): plaintext, or TLS verifying the server against a CA file, with a
 * client certificate when one is given (its subject CN is then the caller's identity).
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

export interface ClientTls {
  readonly caFile: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

export function clientCredentials(tls: ClientTls | undefined): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    readFileSync(tls.caFile),
    tls.keyFile ? readFileSync(tls.keyFile) : null,
    tls.certFile ? readFileSync(tls.certFile) : null,
  );
}
