/**
 * Registration client for a Node service: registers through any discovery replica
 * (failing over between the addresses it is given), renews on a timer, registers
 * again when told NOT_FOUND, and on stop sets DRAINING, waits a grace period so
 * gateways stop sending new calls, then deregisters. Every call carries the service's
 * credential: a service token read from a file, or a client certificate over TLS.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { type Logger, pino } from 'pino';
import type { ServiceInstance } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { clientCredentials } from '../common/client-tls.js';
import { sleep } from '../common/sleep.js';
import { LogIds } from './log-ids.js';
import { registryDefinition } from './service.js';

const { InstanceStatus } = halyard.discovery.v1;

export type InstanceRegistration = Pick<ServiceInstance, 'serviceId' | 'instanceId' | 'address'> &
  Partial<Omit<ServiceInstance, 'registeredAtMs' | 'renewedAtMs'>>;

/** How a service proves who it is to discovery: a token file, a client certificate, or both. */
export interface RegistryCredential {
  /** A file holding the service token (sent as `authorization: Bearer`); read once. */
  readonly tokenFile?: string;
  /** TLS to the replicas: the CA that signed their certificates, and a client certificate. */
  readonly tls?: {
    readonly caFile: string;
    readonly certFile?: string;
    readonly keyFile?: string;
  };
}

/**
 * The credential named by the environment: HALYARD_REGISTRY_TOKEN_FILE, and for TLS
 * HALYARD_REGISTRY_CA_FILE with HALYARD_REGISTRY_CERT_FILE and HALYARD_REGISTRY_KEY_FILE.
 * Secrets stay in files; the environment only says where.
 */
export function registryCredentialFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): RegistryCredential {
  const caFile = env.HALYARD_REGISTRY_CA_FILE || undefined;
  return {
    tokenFile: env.HALYARD_REGISTRY_TOKEN_FILE || undefined,
    tls: caFile
      ? {
          caFile,
          certFile: env.HALYARD_REGISTRY_CERT_FILE || undefined,
          keyFile: env.HALYARD_REGISTRY_KEY_FILE || undefined,
        }
      : undefined,
  };
}

export interface RegistrationClientOptions {
  /** Discovery replicas' gRPC addresses; calls fail over between them. */
  readonly discovery: readonly string[];
  readonly credential: RegistryCredential;
  readonly instance: InstanceRegistration;
  /** Time between DRAINING and deregistration on stop (default 5 s). */
  readonly drainGraceMs?: number;
  readonly callTimeoutMs?: number;
  readonly logger?: Logger;
}

type Callback = (error: grpc.ServiceError | null, response?: Record<string, unknown>) => void;
type RegistryStub = grpc.Client &
  Record<
    string,
    (req: object, metadata: grpc.Metadata, opts: grpc.CallOptions, cb: Callback) => void
  >;
const RegistryClient = grpc.makeGenericClientConstructor(registryDefinition, 'Registry');

/** Codes after which another replica may succeed where this one did not. */
const FAIL_OVER = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.CANCELLED,
]);

export class RegistrationClient {
  private readonly stubs: RegistryStub[];
  private current = 0;
  private timer: NodeJS.Timeout | undefined;
  private renewIntervalMs = 5000;
  private stopped = false;
  private readonly logger: Logger;
  private readonly ref: { serviceId: string; instanceId: string };
  private readonly metadata = new grpc.Metadata();

  constructor(private readonly options: RegistrationClientOptions) {
    if (options.discovery.length === 0) throw new RangeError('discovery: at least one address');
    this.logger = options.logger ?? pino({ name: 'halyard-registration' });
    const { channel, token } = readCredential(options.credential);
    if (token !== undefined) this.metadata.set('authorization', `Bearer ${token}`);
    this.stubs = options.discovery.map(
      (address) => new RegistryClient(address, channel) as unknown as RegistryStub,
    );
    this.ref = { serviceId: options.instance.serviceId, instanceId: options.instance.instanceId };
  }

  /** Registers and starts renewing; rejects on bad input (INVALID_ARGUMENT, ALREADY_EXISTS). */
  async start(): Promise<ServiceInstance> {
    const instance = await this.register();
    this.schedule();
    return instance;
  }

  async setStatus(status: ServiceInstance['status']): Promise<void> {
    await this.call('setStatus', { instance: this.ref, status });
  }

  /** DRAINING, a grace period, then deregistration; stops renewing. */
  async stop(graceMs = this.options.drainGraceMs ?? 5000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    try {
      await this.setStatus(InstanceStatus.DRAINING);
      this.logger.info(
        { msgId: LogIds.clientDraining, ...this.ref, graceMs },
        'draining before deregistration',
      );
      await sleep(graceMs);
      await this.call('deregister', { instance: this.ref });
      this.logger.info({ msgId: LogIds.clientDeregistered, ...this.ref }, 'deregistered');
    } finally {
      for (const stub of this.stubs) stub.close();
    }
  }

  /** On SIGTERM or SIGINT: stop gracefully, then exit. */
  stopOnSignals(exit: (code: number) => void = process.exit): void {
    const handler = () => {
      this.stop().then(
        () => exit(0),
        () => exit(1),
      );
    };
    process.once('SIGTERM', handler);
    process.once('SIGINT', handler);
  }

  private async register(): Promise<ServiceInstance> {
    const response = await this.call('register', {
      instance: { status: InstanceStatus.UP, ...this.options.instance },
    });
    this.renewIntervalMs = Number(response.renewIntervalSeconds) * 1000;
    const instance = response.instance as ServiceInstance;
    this.logger.info(
      { msgId: LogIds.clientRegistered, ...this.ref, renewIntervalMs: this.renewIntervalMs },
      'registered',
    );
    return instance;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.renew(), this.renewIntervalMs);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    try {
      await this.call('renew', { instance: this.ref });
    } catch (error) {
      const code = (error as grpc.ServiceError).code;
      try {
        if (code !== grpc.status.NOT_FOUND) throw error;
        this.logger.warn(
          { msgId: LogIds.clientReregistering, ...this.ref },
          'lease lapsed: registering again',
        );
        if (!this.stopped) await this.register();
      } catch (failure) {
        // The lease outlives several renewal intervals: the next attempt may still save it.
        this.logger.warn(
          { msgId: LogIds.clientRenewFailed, ...this.ref, err: failure },
          'renewal failed; retrying at the next interval',
        );
      }
    }
    this.schedule();
  }

  /** One call, tried on each replica in turn while the failure is the replica's, not the request's. */
  private async call(method: string, request: object): Promise<Record<string, unknown>> {
    let lastError: unknown;
    for (let attempt = 0; attempt < this.stubs.length; attempt++) {
      const index = (this.current + attempt) % this.stubs.length;
      const stub = this.stubs[index]!;
      try {
        const response = await new Promise<Record<string, unknown>>((resolve, reject) =>
          stub[method]!(
            request,
            this.metadata,
            { deadline: Date.now() + (this.options.callTimeoutMs ?? 3000) },
            (error, res) => (error ? reject(error) : resolve(res ?? {})),
          ),
        );
        if (index !== this.current) {
          this.logger.warn(
            {
              msgId: LogIds.clientFailover,
              from: this.options.discovery[this.current],
              to: this.options.discovery[index],
            },
            'discovery replica unreachable: using another',
          );
          this.current = index;
        }
        return response;
      } catch (error) {
        lastError = error;
        if (!FAIL_OVER.has((error as grpc.ServiceError).code)) throw error;
      }
    }
    throw lastError;
  }
}

/** The channel credentials and the token of a credential, read from their files now. */
function readCredential(credential: RegistryCredential): {
  channel: grpc.ChannelCredentials;
  token: string | undefined;
} {
  const { tokenFile, tls } = credential;
  if (tokenFile === undefined && tls?.certFile === undefined) {
    throw new RangeError(
      'credential: a token file (HALYARD_REGISTRY_TOKEN_FILE) or a client certificate (HALYARD_REGISTRY_CA_FILE, _CERT_FILE, _KEY_FILE) is required to call discovery',
    );
  }
  if ((tls?.certFile === undefined) !== (tls?.keyFile === undefined)) {
    throw new RangeError(
      'credential: a client certificate needs both its certificate and key files',
    );
  }
  let token: string | undefined;
  if (tokenFile !== undefined) {
    token = readFileSync(tokenFile, 'utf8').trim();
    if (token === '') throw new RangeError(`credential: the token file ${tokenFile} is empty`);
  }
  const channel = clientCredentials(tls);
  return { channel, token };
}
