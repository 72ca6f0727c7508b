/**
 * Instances that cannot register themselves, defined in a YAML file. Discovery
 * publishes them and renews them for as long as their definition exists; every
 * replica with the file does so (the writes are idempotent), and the health checker
 * probes them like any other instance. Their addresses obey the same allow list as
 * registrations, and a definition claiming a gRPC service name another service id owns
 * is not published (logged at every renewal round).
 *
 * ```yaml
 * instances:
 *   - service: legacy-billing
 *     address: 10.0.0.5:9000
 *     grpcServices: [acme.billing.v1.Billing]
 *     metadata: { health.grpc: "" }
 * ```
 */

import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import { address, grpcServiceName, id, type ServiceInstance } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { ConfigError, loadYamlConfig } from '../common/config.js';
import { parseInstanceMetadata } from '../common/lb-metadata.js';
import type { AddressPolicy } from './addresses.js';
import { LogIds } from './log-ids.js';
import type { Registry } from './registry.js';
import { renewIntervalSeconds } from './validation.js';

const { InstanceStatus } = halyard.discovery.v1;

const definition = z
  .strictObject({
    service: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'must match [a-z0-9][a-z0-9-]* (at most 64)'),
    /** Defaults to a digest of service and address, so every replica derives the same id. */
    id: id.optional(),
    address,
    grpcServices: z.array(grpcServiceName).max(256).default([]),
    metadata: z.record(z.string().max(256), z.string().max(4096)).default({}),
    version: z.string().max(128).default(''),
  })
  .superRefine((value, ctx) => {
    const parsed = parseInstanceMetadata(value.metadata);
    if (!parsed.ok)
      for (const problem of parsed.problems)
        ctx.addIssue({ code: 'custom', path: ['metadata'], message: problem });
  });

const staticFileSchema = z.strictObject({
  instances: z.array(definition).default([]),
});

export type StaticDefinition = z.infer<typeof definition>;

export function staticInstanceId(def: StaticDefinition): string {
  return (
    def.id ??
    `static-${createHash('sha256').update(`${def.service}|${def.address}`).digest('hex').slice(0, 16)}`
  );
}

export async function loadStaticDefinitions(
  file: string,
  leaseSeconds: number,
  addresses: AddressPolicy,
): Promise<ServiceInstance[]> {
  const { instances } = await loadYamlConfig(staticFileSchema, file);
  instances.forEach((def, i) => {
    const refusal = addresses.refusal(def.address);
    if (refusal !== undefined) {
      throw new ConfigError(file, [`instances[${i}].address: ${refusal}`]);
    }
  });
  return instances.map((def) => ({
    serviceId: def.service,
    instanceId: staticInstanceId(def),
    address: def.address,
    grpcServices: def.grpcServices,
    status: InstanceStatus.UP,
    metadata: def.metadata,
    leaseSeconds,
    registeredAtMs: 0,
    renewedAtMs: 0,
    launcherId: '',
    hostId: '',
    version: def.version,
  }));
}

/** Publishes the definitions now and renews them three times per lease. */
export class StaticPublisher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly registry: Registry,
    private readonly definitions: readonly ServiceInstance[],
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    if (this.definitions.length === 0) return;
    await this.renewAll();
    this.logger.info(
      { msgId: LogIds.staticLoaded, instances: this.definitions.length },
      'static definitions published',
    );
    const lease = this.definitions[0]?.leaseSeconds ?? 15;
    this.timer = setInterval(() => {
      this.running ??= this.renewAll().finally(() => {
        this.running = undefined;
      });
    }, renewIntervalSeconds(lease) * 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  private async renewAll(): Promise<void> {
    for (const def of this.definitions) {
      try {
        await this.registry.vouch(def);
      } catch (error) {
        this.logger.error(
          {
            msgId: LogIds.staticRenewFailed,
            serviceId: def.serviceId,
            instanceId: def.instanceId,
            err: error,
          },
          'static definition not renewed; next round retries',
        );
      }
    }
  }
}
