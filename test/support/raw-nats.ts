/**
 * A plain NATS connection for tests that must act as someone else's client: a writer
 * that bypasses Halyard's codecs, or an extender reading the streams directly.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';

export function rawConnection(servers: string | readonly string[]): Promise<NatsConnection> {
  return connect({ servers: typeof servers === 'string' ? servers : [...servers] });
}
