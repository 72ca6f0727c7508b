/**
 * A Halyard component in the registry like any service: it registers through discovery
 * once it serves, renews, retries while discovery is unreachable or refuses it, and on
 * stop drains then deregisters. The cache (`halyard-cache`) and the gateway
 * (`halyard-gateway`) use it so that operators, the console and clients can find every
 * replica, whoever started it. The component serves whether or not discovery answers.
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Setting } from '../common/component-config.js';
import { sleep } from '../common/sleep.js';
import { RegistrationClient } from './client.js';

/**
 * The `discovery:` block of a component's config: where discovery is and the credential
 * it grants the component's service id.
 */
export const selfRegistrationSettings = z
  .strictObject({
    addresses: z.array(z.string().min(1)).min(1),
    /** What the registry says (default: the component's listen host:port). */
    advertise: z.string().min(1).optional(),
    tokenFile: z.string().min(1).optional(),
    tls: z
      .strictObject({
        caFile: z.string().min(1),
        certFile: z.string().min(1).optional(),
        keyFile: z.string().min(1).optional(),
      })
      .optional(),
    leaseSeconds: z.number().int().min(1).max(300).default(10),
    /** DRAINING before deregistration on stop. */
    drainGraceMs: z.number().int().nonnegative().default(1000),
  })
  .refine((d) => d.tokenFile !== undefined || d.tls?.certFile !== undefined, {
    message: 'discovery needs a credential: tokenFile or a tls client certificate',
  });

export type SelfRegistrationSettings = z.infer<typeof selfRegistrationSettings>;

/**
 * `hostId` of a component's config: the host it runs on, which its registration names
 * (`halyard status` shows where each replica runs). A launcher tells its children.
 */
export const hostIdSetting: Setting = {
  env: 'HALYARD_HOST',
  path: 'hostId',
  description: 'the host it runs on, named in its registration (set by its launcher)',
};
export const hostIdField = z.string().min(1).optional();

export interface SelfRegisteredInstance {
  readonly serviceId: string;
  readonly instanceId: string;
  readonly address: string;
  /** The gRPC services it claims; the first is health-checked by discovery. None: no probe. */
  readonly grpcServices: readonly string[];
  /** The host it runs on (hostIdSetting). */
  readonly hostId?: string | undefined;
}

/** Between attempts while discovery is unreachable or refuses the registration. */
const RETRY_MS = 5000;

export class SelfRegistration {
  private readonly client: RegistrationClient;
  private readonly stopper = new AbortController();
  private registering: Promise<boolean> | undefined;

  constructor(
    settings: SelfRegistrationSettings,
    instance: SelfRegisteredInstance,
    private readonly logger: Logger,
    /** The log id of a failed registration or deregistration (a warning). */
    private readonly failedMsgId: string,
  ) {
    const [probed] = instance.grpcServices;
    this.client = new RegistrationClient({
      discovery: settings.addresses,
      credential: { tokenFile: settings.tokenFile, tls: settings.tls },
      instance: {
        serviceId: instance.serviceId,
        instanceId: instance.instanceId,
        address: instance.address,
        grpcServices: [...instance.grpcServices],
        ...(instance.hostId ? { hostId: instance.hostId } : {}),
        metadata: probed === undefined ? {} : { 'health.grpc': probed },
        leaseSeconds: settings.leaseSeconds,
      },
      drainGraceMs: settings.drainGraceMs,
      logger,
    });
  }

  /** Registers in the background, again and again until it succeeds or is stopped. */
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
          { msgId: this.failedMsgId, err: error, retryMs: RETRY_MS },
          'not registered in discovery yet; retrying',
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
          { msgId: this.failedMsgId, err: error },
          'not deregistered from discovery: the lease lapses instead',
        ),
      );
  }
}
