/**
 * A plain NATS connection for tests that must act as someone else's client: a writer
 * that bypasses Halyard's codecs, an extender reading the streams directly, or a role
 * of a locked bus trying what its permissions forbid.
 */
import { readFileSync } from 'node:fs';
import { type JetStreamClient, jetstream } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import {
  type ConnectionOptions,
  connect,
  type NatsConnection,
  nkeyAuthenticator,
  TimeoutError,
} from '@nats-io/transport-node';
import { inboxPrefix } from '../../bus/index.js';
import type { RoleConnection } from './nats-cluster.js';

export function rawConnection(
  servers: string | readonly string[],
  options: Partial<ConnectionOptions> = {},
): Promise<NatsConnection> {
  return connect({ servers: typeof servers === 'string' ? servers : [...servers], ...options });
}

/** A connection of `role` to a secure cluster (see NatsCluster.role). */
export function rawRoleConnection(
  role: RoleConnection,
  options: Partial<ConnectionOptions> = {},
): Promise<NatsConnection> {
  return connect({
    servers: role.servers,
    tls: { caFile: role.ca, certFile: role.cert, keyFile: role.key },
    inboxPrefix: inboxPrefix(role.role),
    authenticator: nkeyAuthenticator(
      new TextEncoder().encode(readFileSync(role.nkey, 'utf8').trim()),
    ),
    ...options,
  });
}

/**
 * A JetStream client whose first publish is stored but whose acknowledgement never
 * arrives, as when a stream's leader dies between storing and answering.
 */
export function losingFirstAck(nc: NatsConnection): JetStreamClient {
  const js = jetstream(nc);
  let lost = false;
  return new Proxy(js, {
    get(target, property, receiver) {
      if (property !== 'publish') return Reflect.get(target, property, receiver);
      return async (...args: Parameters<JetStreamClient['publish']>) => {
        const ack = await target.publish(...args);
        if (lost) return ack;
        lost = true;
        throw new TimeoutError();
      };
    },
  });
}

/** A bucket opened with a plain connection. */
export function openBucket(nc: NatsConnection, name: string): Promise<KV> {
  return new Kvm(nc).open(name);
}
