/**
 * A Node service process: a gRPC server that registers itself with the registration
 * client and stops gracefully on SIGTERM (DRAINING, grace period, deregistration).
 * Settings come from the environment (its credential too); logs are JSON lines on stdout.
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { pino } from 'pino';
import { RegistrationClient, registryCredentialFromEnv } from '../../services/discovery/client.js';

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};

const server = new grpc.Server();
new HealthImplementation({ '': 'SERVING' }).addToServer(server);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
    e ? reject(e) : resolve(p),
  ),
);

const client = new RegistrationClient({
  discovery: env('DISCOVERY').split(','),
  // HALYARD_REGISTRY_TOKEN_FILE or a client certificate, as any service.
  credential: registryCredentialFromEnv(),
  instance: {
    serviceId: env('SERVICE_ID'),
    instanceId: env('INSTANCE_ID'),
    address: `127.0.0.1:${port}`,
    leaseSeconds: Number(env('LEASE_SECONDS')),
  },
  drainGraceMs: Number(env('GRACE_MS')),
  logger: pino({ name: 'registered-service' }),
});
await client.start();
client.stopOnSignals((code) => {
  server.forceShutdown();
  process.exit(code);
});
