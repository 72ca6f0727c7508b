/**
 * A gateway's own entry in discovery's registry (`discovery:` in its config), so that
 * clients and `halyard status` find it. One per gateway, whatever its number of workers.
 */
import type { Logger } from 'pino';
import { SelfRegistration } from '../discovery/self-registration.js';
import { GATEWAY_SERVICE_ID, type GatewayConfig } from './config.js';
import { GatewayLogIds } from './log-ids.js';

/** Starts registering the gateway listening on `port`; undefined without `discovery:`. */
export function registerGateway(
  config: GatewayConfig,
  port: number,
  logger: Logger,
): SelfRegistration | undefined {
  if (!config.discovery) return undefined;
  const registration = new SelfRegistration(
    config.discovery,
    {
      serviceId: GATEWAY_SERVICE_ID,
      instanceId: config.id,
      address: config.discovery.advertise ?? `${config.listen.host}:${port}`,
      // A gateway serves other services' names: it claims none, so nothing routes to it.
      grpcServices: [],
      hostId: config.hostId,
    },
    logger,
    GatewayLogIds.registrationFailed,
  );
  registration.start();
  return registration;
}
