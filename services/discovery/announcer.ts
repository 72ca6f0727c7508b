/**
 * A discovery replica announces itself by registering in the registry as service
 * `halyard-discovery`; the live UP entries of that service are the replicas that share
 * health-check work. It renews its own entry, so a replica that dies drops out of
 * the set one lease later.
 */
import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { halyard } from '../../proto/gen/halyard.js';
import { RegistryError } from './errors.js';
import { DISCOVERY_SERVICE_ID } from './health-checker.js';
import { LogIds } from './log-ids.js';
import type { Registry } from './registry.js';
import { REGISTRY_SERVICE } from './service.js';
import { renewIntervalSeconds } from './validation.js';

export class Announcer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly ref: { serviceId: string; instanceId: string };

  constructor(
    private readonly registry: Registry,
    private readonly replicaId: string,
    private readonly address: string,
    private readonly leaseSeconds: number,
    private readonly logger: Logger,
  ) {
    this.ref = { serviceId: DISCOVERY_SERVICE_ID, instanceId: replicaId };
  }

  async start(): Promise<void> {
    await this.register();
    this.timer = setInterval(() => {
      this.running ??= this.renew().finally(() => {
        this.running = undefined;
      });
    }, renewIntervalSeconds(this.leaseSeconds) * 1000);
    this.timer.unref();
  }

  /** Leaves the replica set at once, so the others take over this replica's share now. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
    await this.registry.deregister(this.ref).catch(() => {});
  }

  private register(): Promise<unknown> {
    return this.registry.register({
      ...this.ref,
      address: this.address,
      grpcServices: [REGISTRY_SERVICE],
      status: halyard.discovery.v1.InstanceStatus.UP,
      metadata: {},
      leaseSeconds: this.leaseSeconds,
      version: '',
    });
  }

  private async renew(): Promise<void> {
    try {
      await this.registry.renew(this.ref);
    } catch (error) {
      try {
        if (error instanceof RegistryError && error.code === status.NOT_FOUND)
          await this.register();
        else throw error;
      } catch (failure) {
        this.logger.error(
          {
            msgId: LogIds.announceFailed,
            replicaId: this.replicaId,
            err: failure,
          },
          'could not renew this replica’s own registration; retrying',
        );
      }
    }
  }
}
