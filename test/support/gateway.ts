/** Starting a gateway replica and registering test instances, for integration tests. */
import type { Logger } from 'pino';
import { type Bus, RegistryBucket, type ServiceInstance } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { type GatewayConfigInput, gatewayConfigSchema } from '../../services/gateway/config.js';
import { Gateway, type GatewayOptions } from '../../services/gateway/gateway.js';
import { ECHO_SERVICE } from './echo-service.js';
import { instance } from './samples.js';
import { until } from './wait.js';

export const { InstanceStatus } = halyard.discovery.v1;

export async function startGateway(
  bus: Bus,
  servers: string[],
  logger: Logger,
  overrides: Partial<GatewayConfigInput> = {},
  options: GatewayOptions = {},
): Promise<Gateway> {
  const config = gatewayConfigSchema.parse({
    id: 'gw-test',
    bus: { servers },
    listen: { host: '127.0.0.1', port: 0 },
    admin: { port: 0 },
    // The test services live in Halyard's namespace: routed on purpose.
    routing: { exposeInternal: ['halyard.testing.'] },
    ...overrides,
  });
  const gateway = await Gateway.start(config, bus, logger, options);
  await gateway.ready();
  return gateway;
}

/** Writes an echo instance to the registry, as discovery would. */
export async function register(
  bus: Bus,
  overrides: Partial<ServiceInstance> & { address: string; instanceId: string },
): Promise<ServiceInstance> {
  const value = instance({
    serviceId: 'echo',
    grpcServices: [ECHO_SERVICE],
    status: InstanceStatus.UP,
    metadata: {},
    leaseSeconds: 600,
    renewedAtMs: Date.now(),
    ...overrides,
  });
  await (await bus.store(RegistryBucket)).put(value);
  return value;
}

/** Waits until the gateway's routing table shows the instance in the given state. */
export function routed(
  gateway: Gateway,
  grpcService: string,
  instanceId: string,
  available = true,
): Promise<unknown> {
  return until(`${instanceId} routed (available: ${available})`, () =>
    gateway.table
      .route(grpcService)
      ?.endpoints.some((e) => e.id === instanceId && e.available === available),
  );
}
