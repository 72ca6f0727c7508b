/**
 * Readiness probes: the instance answers its HTTP URL with 2xx, its gRPC health check
 * says SERVING, or discovery's registry holds it UP on its port.
 */
import { credentials, makeClientConstructor } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import type { Readiness } from './config.js';

/** Discovery's registry as the launcher sees it, for instances on this host. */
export interface Registry {
  /** Whether `serviceId` has an UP instance on this host and port (from the registry view). */
  isUp(serviceId: string, port: number): boolean;
  /** Marks the instance on this port DRAINING, so that gateways send it nothing new. */
  markDraining(serviceId: string, port: number): Promise<void>;
}

export type Probe = () => Promise<boolean>;

const PROBE_TIMEOUT_MS = 1000;
const HealthClient = makeClientConstructor(healthService as never, 'grpc.health.v1.Health');

interface HealthCheckClient {
  check(
    request: { service: string },
    options: { deadline: Date },
    callback: (error: Error | null, reply?: { status: string }) => void,
  ): void;
  close(): void;
}

// biome-ignore lint/suspicious/noTemplateCurlyInString: ${PORT} is the config's placeholder, not a template
const withPort = (text: string, port: number) => text.replaceAll('${PORT}', String(port));

export function probeFor(
  readiness: Readiness,
  address: string,
  port: number,
  registry: Registry,
): Probe {
  if ('http' in readiness) {
    const url = withPort(readiness.http, port);
    return async () => {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
        await res.body?.cancel();
        return res.ok;
      } catch {
        return false;
      }
    };
  }
  if ('grpc' in readiness) {
    const target = readiness.grpc.address
      ? withPort(readiness.grpc.address, port)
      : `${address.includes(':') ? `[${address}]` : address}:${port}`;
    const service = readiness.grpc.service;
    return () =>
      new Promise((resolve) => {
        const client = new HealthClient(
          target,
          credentials.createInsecure(),
        ) as unknown as HealthCheckClient;
        const deadline = new Date(Date.now() + PROBE_TIMEOUT_MS);
        client.check({ service }, { deadline }, (error, reply) => {
          client.close();
          resolve(!error && reply?.status === 'SERVING');
        });
      });
  }
  const { serviceId } = readiness.registered;
  return async () => registry.isUp(serviceId, port);
}
