/**
 * A cache replica in the registry: service `halyard-cache`, gRPC `halyard.cache.v1.Cache`,
 * registered through discovery once the replica serves (services/discovery/self-registration.ts).
 * Discovery probes its gRPC health, so a replica that stops serving shows DOWN. Gateways
 * never route it (Halyard's `halyard.*` services are internal); it is there so that
 * operators, the console and clients can find the replicas.
 */
import type { Logger } from 'pino';
import { SelfRegistration, type SelfRegistrationSettings } from '../discovery/self-registration.js';
import { CacheLogIds } from './log-ids.js';

export const CACHE_SERVICE_ID = 'halyard-cache';

export function cacheRegistration(
  settings: SelfRegistrationSettings,
  instance: {
    readonly instanceId: string;
    readonly address: string;
    readonly grpcService: string;
    readonly hostId: string | undefined;
  },
  logger: Logger,
): SelfRegistration {
  return new SelfRegistration(
    settings,
    {
      serviceId: CACHE_SERVICE_ID,
      instanceId: instance.instanceId,
      address: instance.address,
      grpcServices: [instance.grpcService],
      hostId: instance.hostId,
    },
    logger,
    CacheLogIds.registrationFailed,
  );
}
