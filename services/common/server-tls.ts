/**
 * Server credentials for a control API (discovery's Registry, the cache, launcher
 * control): plaintext, TLS, or TLS that also verifies client certificates against a CA
 * so services/common/callers.ts can take the caller's identity from its subject CN.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { z } from 'zod';

export const serverTlsSettings = z
  .strictObject({
    certFile: z.string().min(1),
    keyFile: z.string().min(1),
    /** Client certificates are verified against this CA; their subject CN is the caller. */
    clientCaFile: z.string().min(1).optional(),
    /** Every caller must present a certificate (no service tokens). */
    requireClientCert: z.boolean().default(false),
  })
  .refine((tls) => !tls.requireClientCert || tls.clientCaFile, {
    message: 'requireClientCert needs clientCaFile',
  });

export type ServerTls = z.infer<typeof serverTlsSettings>;

export async function serverCredentials(
  tls: ServerTls | undefined,
): Promise<grpc.ServerCredentials> {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  if (!tls.clientCaFile) {
    return grpc.ServerCredentials.createSsl(null, [
      { private_key: readFileSync(tls.keyFile), cert_chain: readFileSync(tls.certFile) },
    ]);
  }
  // Client certificates are requested and verified against the CA; without one the
  // handshake still succeeds (unless required) and the caller may present a token.
  const files = new grpc.experimental.FileWatcherCertificateProvider({
    certificateFile: tls.certFile,
    privateKeyFile: tls.keyFile,
    caCertificateFile: tls.clientCaFile,
    refreshIntervalMs: 60_000,
  });
  // The provider reads the files asynchronously; a handshake before that fails, so the
  // port is bound only once both the identity and the CA are loaded. Listeners are
  // removed once served: a provider with listeners keeps a refresh timer alive.
  await Promise.all([
    new Promise<void>((resolve) => {
      const listener = () => {
        files.removeCaCertificateListener(listener);
        resolve();
      };
      files.addCaCertificateListener(listener);
    }),
    new Promise<void>((resolve) => {
      const listener = () => {
        files.removeIdentityCertificateListener(listener);
        resolve();
      };
      files.addIdentityCertificateListener(listener);
    }),
  ]);
  // grpc-js takes (identity, ca, requireClientCertificate) whatever its typings call them.
  return grpc.experimental.createCertificateProviderServerCredentials(
    files,
    files,
    tls.requireClientCert,
  );
}
