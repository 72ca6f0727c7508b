/** Cache replicas and throwaway TLS material for the cache service's tests. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Bus } from '../../bus/index.js';
import { type CacheConfigInput, cacheConfig } from '../../services/cache/config.js';
import { tokenDigest } from '../../services/cache/identity.js';
import { CacheServer } from '../../services/cache/server.js';
import { validateConfig } from '../../services/common/config.js';

export interface Replica {
  readonly bus: Bus;
  readonly server: CacheServer;
  readonly address: string;
  close(): Promise<void>;
}

/** `token-<namespace>` for each namespace, as the config lists them (digests only). */
export function tokensFor(namespaces: readonly string[]) {
  return namespaces.map((namespace) => ({ sha256: tokenDigest(`token-${namespace}`), namespace }));
}

export async function startReplica(
  servers: string[],
  id: string,
  config: Omit<CacheConfigInput, 'bus' | 'id'>,
  logger: Logger,
): Promise<Replica> {
  const bus = await Bus.connect({ servers, name: id, logger });
  const parsed = validateConfig(
    cacheConfig,
    {
      grpc: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      ...config,
      id,
      bus: { servers },
    },
    id,
  );
  const server = await CacheServer.start({ config: parsed, bus, logger });
  // A replica that never loads its view is a failure to report, not a hang.
  await Promise.race([
    server.ready,
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error(`${id}: view not loaded after 30 s`)), 30_000).unref(),
    ),
  ]);
  return {
    bus,
    server,
    address: `127.0.0.1:${server.grpcPort}`,
    close: async () => {
      await server.close();
      await bus.close();
    },
  };
}

export interface Pki {
  readonly dir: string;
  readonly caFile: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** Client certificate and key with this subject CN, signed by the CA (or by a stranger). */
  client(cn: string, options?: { stranger?: boolean }): { certFile: string; keyFile: string };
}

/** A CA, a server certificate for 127.0.0.1, and client certificates on demand (openssl). */
export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'halyard-pki-'));
  const at = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = (name: string) =>
    openssl(
      'req',
      '-x509',
      ...ec,
      '-keyout',
      at(`${name}.key`),
      '-out',
      at(`${name}.crt`),
      '-subj',
      `/CN=${name}`,
      '-days',
      '1',
    );
  ca('ca');
  ca('stranger-ca');
  writeFileSync(at('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  const issue = (name: string, cn: string, issuer: string, ext?: string) => {
    openssl(
      'req',
      ...ec,
      '-keyout',
      at(`${name}.key`),
      '-out',
      at(`${name}.csr`),
      '-subj',
      `/CN=${cn}`,
    );
    openssl(
      'x509',
      '-req',
      '-in',
      at(`${name}.csr`),
      '-CA',
      at(`${issuer}.crt`),
      '-CAkey',
      at(`${issuer}.key`),
      '-CAcreateserial',
      '-out',
      at(`${name}.crt`),
      '-days',
      '1',
      ...(ext ? ['-extfile', ext] : []),
    );
    return { certFile: at(`${name}.crt`), keyFile: at(`${name}.key`) };
  };
  const server = issue('server', 'cache', 'ca', at('server.ext'));
  let n = 0;
  return {
    dir,
    caFile: at('ca.crt'),
    serverCert: server.certFile,
    serverKey: server.keyFile,
    client: (cn, options = {}) =>
      issue(`client-${n++}`, cn, options.stranger ? 'stranger-ca' : 'ca'),
  };
}
