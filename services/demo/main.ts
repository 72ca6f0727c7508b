/**
 * The demo service of the local mesh: `demo.greeter.v1.Greeter` (proto/demo/greeter/v1).
 * Every reply names the instance that answered, so balancing, failover and stickiness
 * can be watched through the gateways.
 *
 *   PORT=7601 HALYARD_INSTANCE=1 HALYARD_NATS=nats://127.0.0.1:4222 \
 *     node --enable-source-maps dist/services/demo/main.js
 *
 * It finds the discovery replicas in the registry (service `halyard-discovery`) over
 * the bus, registers as service `greeter` with `lb.policy=user` through the registration
 * client, renews, and on SIGTERM/SIGINT drains (DRAINING, a grace period, deregistration)
 * before it stops serving.
 *
 * Environment: PORT (listen port, required), HALYARD_INSTANCE (instance number, default 1),
 * HALYARD_NATS (comma-separated NATS URLs, default nats://127.0.0.1:4222),
 * HALYARD_HOST (host id, from the launcher), HALYARD_HOST_ADDRESS (where to listen and
 * what to register, from the launcher; default 127.0.0.1), DEMO_DRAIN_MS (grace period, default 2000),
 * DEMO_LEASE_SECONDS (default 10), HALYARD_COMPONENT_VERSION (the version it registers,
 * default 1; from the launcher), and the credential discovery grants service `greeter`
 * to: HALYARD_REGISTRY_TOKEN_FILE (a file holding the token) and/or a client certificate
 * (HALYARD_REGISTRY_CA_FILE, HALYARD_REGISTRY_CERT_FILE, HALYARD_REGISTRY_KEY_FILE).
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { Bus } from '../../bus/index.js';
import { BusEnv, busOptions, busSecurityFromEnv } from '../common/bus-settings.js';
import { list } from '../common/component-config.js';
import { serviceDefinition } from '../common/grpc.js';
import { componentLogger } from '../common/logger.js';
import { sleep } from '../common/sleep.js';
import { RegistrationClient, registryCredentialFromEnv } from '../discovery/client.js';
import { DISCOVERY_SERVICE_ID } from '../discovery/health-checker.js';

export const GREETER_SERVICE = 'demo.greeter.v1.Greeter';
export const GREETER_SERVICE_ID = 'greeter';

interface HelloRequest {
  name: string;
}
interface StreamHellosRequest {
  name: string;
  count: number;
  intervalMs: number;
}
interface HelloReply {
  message: string;
  instanceId: string;
  index: number;
}

const logger = componentLogger('halyard-demo');
const env = process.env;

/** The whole number in variable `name` (`fallback` when unset); out of range ends the demo. */
function wholeNumber(name: string, min: number, max: number, fallback?: number): number {
  const text = env[name];
  const value = text === undefined || text === '' ? fallback : Number(text);
  if (value === undefined || !Number.isInteger(value) || value < min || value > max) {
    logger.error({ [name]: text }, `${name} must be a whole number from ${min} to ${max}`);
    process.exit(2);
  }
  return value;
}

const port = wholeNumber('PORT', 1, 65_535);
const instanceNumber = env.HALYARD_INSTANCE ?? '1';
const servers = list(env[BusEnv.servers] ?? 'nats://127.0.0.1:4222');
const drainMs = wholeNumber('DEMO_DRAIN_MS', 0, 600_000, 2000);
const leaseSeconds = wholeNumber('DEMO_LEASE_SECONDS', 1, 3600, 10);
// The launcher says where this host's components listen; alone, loopback.
const host = env.HALYARD_HOST_ADDRESS ?? '127.0.0.1';
const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
let instanceId = `greeter-${instanceNumber}`;

const server = new grpc.Server();
// NOT_SERVING until registered: a launcher's gRPC readiness probe then means "listening
// and in the registry" (an entry left by a killed predecessor on the same port does not count).
const health = new HealthImplementation({ '': 'NOT_SERVING', [GREETER_SERVICE]: 'NOT_SERVING' });
health.addToServer(server);
server.addService(serviceDefinition(GREETER_SERVICE), {
  sayHello(
    call: grpc.ServerUnaryCall<HelloRequest, HelloReply>,
    callback: grpc.sendUnaryData<HelloReply>,
  ) {
    const name = call.request.name || 'world';
    callback(null, { message: `Hello, ${name}!`, instanceId, index: 0 });
  },
  async streamHellos(call: grpc.ServerWritableStream<StreamHellosRequest, HelloReply>) {
    const name = call.request.name || 'world';
    const count = Math.min(call.request.count || 3, 100);
    const interval = Math.min(call.request.intervalMs || 200, 5000);
    for (let index = 0; index < count && !call.cancelled; index++) {
      if (index > 0) await sleep(interval);
      call.write({ message: `Hello #${index + 1}, ${name}!`, instanceId, index });
    }
    call.end();
  },
});

await new Promise<void>((resolve, reject) =>
  server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error) =>
    error ? reject(error) : resolve(),
  ),
);
logger.info({ address, instanceId }, `greeter listening on ${address}`);

const bus = await Bus.connect(
  busOptions({ ...busSecurityFromEnv(env), servers }, `demo-${instanceId}`, logger),
);

/** The discovery replicas' addresses, from the registry; waits until there is one. */
async function discoveryAddresses(): Promise<string[]> {
  for (;;) {
    const { entries } = await bus.snapshot('registrations');
    const found = [...entries.values()]
      .filter((i) => i.serviceId === DISCOVERY_SERVICE_ID)
      .map((i) => i.address);
    if (found.length > 0) return found;
    logger.info('waiting for a discovery replica');
    await sleep(500);
  }
}

const discovery = await discoveryAddresses();
let registration: RegistrationClient | undefined;
for (let attempt = 1; ; attempt++) {
  registration = new RegistrationClient({
    discovery,
    credential: registryCredentialFromEnv(),
    drainGraceMs: drainMs,
    logger,
    instance: {
      serviceId: GREETER_SERVICE_ID,
      instanceId,
      address,
      grpcServices: [GREETER_SERVICE],
      // Sticky per user; a greeting is safe to run twice, so a gateway may retry it on
      // another greeter after a failure that may have run it.
      metadata: {
        'lb.policy': 'user',
        'lb.idempotentMethods': `${GREETER_SERVICE}/SayHello,${GREETER_SERVICE}/StreamHellos`,
      },
      leaseSeconds,
      hostId: env.HALYARD_HOST ?? '',
      // The launcher passes the component's pinned version of the mesh configuration.
      version: env.HALYARD_COMPONENT_VERSION ?? '1',
    },
  });
  try {
    await registration.start();
    break;
  } catch (error) {
    const code = (error as grpc.ServiceError).code;
    // The previous run of this instance (killed) still holds the id at another port
    // until its lease lapses: register under an id of its own meanwhile.
    if (code === grpc.status.ALREADY_EXISTS && attempt === 1) {
      instanceId = `greeter-${instanceNumber}-${port}`;
      continue;
    }
    throw error;
  }
}
logger.info({ instanceId, discovery }, `registered as ${GREETER_SERVICE_ID}/${instanceId}`);
health.setStatus('', 'SERVING');
health.setStatus(GREETER_SERVICE, 'SERVING');

let stopping = false;
const stop = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'draining');
  health.setStatus('', 'NOT_SERVING');
  health.setStatus(GREETER_SERVICE, 'NOT_SERVING');
  await registration?.stop().catch(() => {});
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  await bus.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
