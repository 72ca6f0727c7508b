/**
 * A plain NATS connection for tests that must act as someone else's client: a writer
 * that bypasses Halyard's codecs, an extender reading the streams directly, or a role
 * of a locked bus trying what its permissions forbid.
 */
import { readFileSync } from 'node:fs';
import { connect, type NatsConnection, nkeyAuthenticator } from '@nats-io/transport-node';
import { inboxPrefix } from '../../bus/index.js';
import type { RoleConnection } from './nats-cluster.js';

export function rawConnection(servers: string | readonly string[]): Promise<NatsConnection> {
  return connect({ servers: typeof servers === 'string' ? servers : [...servers] });
}

/** A connection of `role` to a secure cluster (see NatsCluster.role). */
export function rawRoleConnection(role: RoleConnection): Promise<NatsConnection> {
  return connect({
    servers: role.servers,
    tls: { caFile: role.ca, certFile: role.cert, keyFile: role.key },
    inboxPrefix: inboxPrefix(role.role),
    authenticator: nkeyAuthenticator(
      new TextEncoder().encode(readFileSync(role.nkey, 'utf8').trim()),
    ),
  });
}
