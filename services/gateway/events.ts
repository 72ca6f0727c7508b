/**
 * The gateway's events on the bus (`halyard.events.gateway.<id>.<kind>`): started,
 * stopping, instance ejected and returned, user moved. Publishing never fails the
 * caller: the bus may be the thing that is down, so a lost event is logged.
 */
import type { Logger } from 'pino';
import type { EventPublisher } from '../../bus/index.js';
import { GatewayLogIds } from './log-ids.js';

export interface GatewayEventFields {
  readonly serviceId?: string;
  readonly instanceId?: string;
  readonly toInstanceId?: string;
  readonly userKey?: string;
  readonly ejectionSeconds?: number;
  readonly reason: string;
}

export class GatewayEvents {
  private seq = 0;

  constructor(
    private readonly publisher: EventPublisher,
    private readonly gatewayId: string,
    private readonly logger: Logger,
  ) {}

  publish(kind: number, fields: GatewayEventFields): Promise<void> {
    const now = Date.now();
    const event = {
      eventId: `${this.gatewayId}-${now}-${++this.seq}`,
      kind,
      occurredAtMs: now,
      gatewayId: this.gatewayId,
      serviceId: fields.serviceId ?? '',
      instanceId: fields.instanceId ?? '',
      toInstanceId: fields.toInstanceId ?? '',
      userKey: fields.userKey ?? '',
      ejectionSeconds: fields.ejectionSeconds ?? 0,
      reason: fields.reason,
    };
    return this.publisher.publish({ source: 'gateway', event }).then(
      () => {},
      (error: Error) => {
        this.logger.error(
          { msgId: GatewayLogIds.eventPublishFailed, kind, err: error },
          'gateway event not published',
        );
      },
    );
  }
}
