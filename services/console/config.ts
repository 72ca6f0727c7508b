/**
 * The console's config file (`halyard console --config console.yaml`): where it listens
 * and who may look when that is not loopback.
 *
 *   listen: 0.0.0.0:9000
 *   tokens:          # SHA-256 of each access token: printf %s "$TOKEN" | sha256sum
 *     - { sha256: 9f86d0…, identity: ops }
 *   tls: { certFile: console.pem, keyFile: console.key, clientCaFile: ca.pem, requireClientCert: true }
 *   control: true    # restart, stop, start from the launcher page (needs tokens, bus role operator)
 */
import { z } from 'zod';
import { serverTlsSettings } from '../common/server-tls.js';

export const DEFAULT_LISTEN = '127.0.0.1:9000';

export const consoleConfig = z.strictObject({
  listen: z.string().min(1).default(DEFAULT_LISTEN),
  tokens: z
    .array(
      z.strictObject({
        sha256: z
          .string()
          .regex(/^[0-9a-f]{64}$/, 'must be the SHA-256 of the token, 64 lower-case hex digits'),
        identity: z.string().min(1).max(128),
      }),
    )
    .default([]),
  tls: serverTlsSettings.optional(),
  control: z.boolean().default(false),
});

export type ConsoleConfig = z.infer<typeof consoleConfig>;
