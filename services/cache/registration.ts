/**
 * A cache replica in the registry: service `halyard-cache`, gRPC `halyard.cache.v1.Cache`,
 * registered through discovery like any service once the replica serves, renewed, and
 * drained then deregistered when it stops. Discovery probes its gRPC health, so a replica
 * that stops serving shows DOWN. Gateways never route it (Halyard's `halyard.*` services
 * are internal); it is there so that operators, the console and clients can find the
 * replicas.
 *
 * The registration client is discovery's own (services/discovery/client.ts): the one
 * module of another component the cache imports, as every registering service does.
 */
import type { Logger } from 'pino';
import { sleep } from '../common/sleep.js';
import { RegistrationClient } from '../discovery/client.js';
import type { CacheConfig } from './config.js';
import { CacheLogIds } from './log-ids.js';

export const CACHE_SERVICE_ID = 'halyard-cache';
/** Between attempts while discovery is unreachable or refuses the registration. */
const RETRY_MS = 5000;

export class CacheRegistration {
  private readonly client: RegistrationClient;
  private readonly stopper = new AbortController();
  private registering: Promise<boolean> | undefined;

  constructor(
    settings: NonNullable<CacheConfig['discovery']>,
    instance: {
      readonly instanceId: string;
      readonly address: string;
      readonly grpcService: string;
    },
    private readonly logger: Logger,
  ) {
    this.client = new RegistrationClient({
      discovery: settings.addresses,
      credential: { tokenFile: settings.tokenFile, tls: settings.tls },
      instance: {
        serviceId: CACHE_SERVICE_ID,
        instanceId: instance.instanceId,
        address: instance.address,
        grpcServices: [instance.grpcService],
        metadata: { 'health.grpc': instance.grpcService },
        leaseSeconds: settings.leaseSeconds,
      },
      drainGraceMs: settings.drainGraceMs,
      logger,
    });
  }

  /**
   * Registers in the background, again and again until it succeeds: the replica serves
   * whether or not discovery can be reached.
   */
  start(): void {
    this.registering = this.register();
  }

  /** True once registered; false when stopped first. */
  private async register(): Promise<boolean> {
    const { signal } = this.stopper;
    while (!signal.aborted) {
      try {
        await this.client.start();
        return true;
      } catch (error) {
        if (signal.aborted) return false;
        this.logger.warn(
          { msgId: CacheLogIds.registrationFailed, err: error, retryMs: RETRY_MS },
          'cache replica not registered in discovery yet; retrying',
        );
        await sleep(RETRY_MS, signal).catch(() => {});
      }
    }
    return false;
  }

  /** Drains (DRAINING, the grace period) and deregisters; a failure is logged, not thrown. */
  async stop(): Promise<void> {
    this.stopper.abort();
    // An attempt under way may still succeed: then it is undone like any registration.
    if (!(await this.registering)) return;
    await this.client
      .stop()
      .catch((error: Error) =>
        this.logger.warn(
          { msgId: CacheLogIds.registrationFailed, err: error },
          'cache replica not deregistered: its lease lapses instead',
        ),
      );
  }
}
