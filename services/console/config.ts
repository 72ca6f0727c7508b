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
import { tokenList } from '../common/callers.js';
import type { SettingsSpec } from '../common/component-config.js';
import { serverTlsSettings } from '../common/server-tls.js';

export const DEFAULT_LISTEN = '127.0.0.1:9000';

export const consoleConfig = z.strictObject({
  listen: z.string().min(1).default(DEFAULT_LISTEN),
  tokens: tokenList('identity', z.string().min(1).max(128)),
  tls: serverTlsSettings.optional(),
  control: z.boolean().default(false),
});

export type ConsoleConfig = z.infer<typeof consoleConfig>;

/** The settings `halyard console` takes as flags besides its `--config` file. */
export const consoleSettings: SettingsSpec<typeof consoleConfig> = {
  schema: consoleConfig,
  settings: [
    {
      flag: '--listen <host:port>',
      path: 'listen',
      description: `where to serve it (default ${DEFAULT_LISTEN})`,
    },
    {
      flag: '--control',
      path: 'control',
      description:
        'offer restart, stop and start on the launcher pages to callers with an access token (needs tokens and the bus operator role)',
    },
  ],
};
