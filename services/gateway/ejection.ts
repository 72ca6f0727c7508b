/**
 * Passive ejection (Envoy's consecutive gateway failures): an instance whose connection
 * failed several times in a row gets no calls for a while, twice as long each time it
 * is ejected again before serving a call, up to a cap. Ejections and returns are
 * published as gateway events so that other replicas and operators see them.
 */
import type { Logger } from 'pino';
import { halyard } from '../../proto/gen/halyard.js';
import { cappedExponential, type ExponentialBackoff } from '../common/backoff.js';
import type { Endpoint } from './endpoint.js';
import { GatewayLogIds } from './log-ids.js';
import { gatewayMetrics } from './metrics.js';

const { Kind } = halyard.gateway.v1.GatewayEvent;

/** Ejected for `baseMs`, doubling with each ejection before the instance serves a call again. */
export interface EjectionOptions extends ExponentialBackoff {
  readonly consecutiveFailures: number;
}

export type EjectionEvent = (
  kind: typeof Kind.INSTANCE_EJECTED | typeof Kind.INSTANCE_RETURNED,
  endpoint: Endpoint,
  ejectionSeconds: number,
  reason: string,
) => void;

export class Ejector {
  private ejectedCount = 0;

  constructor(
    private readonly options: EjectionOptions,
    private readonly publish: EjectionEvent,
    private readonly logger: Logger,
  ) {}

  get ejected(): number {
    return this.ejectedCount;
  }

  /** The instance answered: its failure streak and ejection history are over. */
  success(endpoint: Endpoint): void {
    endpoint.served();
  }

  /** A connection-level failure (could not connect, session lost, refused before processing). */
  failure(endpoint: Endpoint, reason: string): void {
    if (endpoint.ejected) return;
    const failures = endpoint.failed();
    if (failures < this.options.consecutiveFailures) return;
    const ms = cappedExponential(this.options, endpoint.ejectionLevel);
    endpoint.eject(ms, () => this.return(endpoint));
    this.ejectedCount++;
    gatewayMetrics.ejections.inc({ service: endpoint.serviceId });
    this.logger.warn(
      {
        msgId: GatewayLogIds.instanceEjected,
        serviceId: endpoint.serviceId,
        instanceId: endpoint.id,
        ejectionMs: ms,
        failures,
        reason,
      },
      'instance ejected after consecutive connection failures',
    );
    this.publish(
      Kind.INSTANCE_EJECTED,
      endpoint,
      Math.ceil(ms / 1000),
      `${failures} consecutive connection failures, last: ${reason}`,
    );
  }

  /** The instance left the registry: its ejection ends with it. */
  forget(endpoint: Endpoint): void {
    if (!endpoint.ejected) return;
    endpoint.readmit();
    this.ejectedCount--;
  }

  private return(endpoint: Endpoint): void {
    if (!endpoint.ejected) return;
    endpoint.readmit();
    this.ejectedCount--;
    gatewayMetrics.returns.inc({ service: endpoint.serviceId });
    this.logger.info(
      {
        msgId: GatewayLogIds.instanceReturned,
        serviceId: endpoint.serviceId,
        instanceId: endpoint.id,
      },
      'ejected instance gets calls again',
    );
    this.publish(Kind.INSTANCE_RETURNED, endpoint, 0, 'ejection period over');
  }
}
