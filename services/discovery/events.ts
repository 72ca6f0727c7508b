/** Discovery events on the bus: what this replica decided, for operators and extenders. */
import type { Logger } from 'pino';
import type { EventPublisher } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';

const { Kind } = halyard.discovery.v1.DiscoveryEvent;
export type DiscoveryEventKind = halyard.discovery.v1.DiscoveryEvent.Kind;
export { Kind as DiscoveryEventKind };

export interface EventSubject {
  readonly serviceId?: string;
  readonly instanceId?: string;
  readonly status?: number;
}

export class DiscoveryEvents {
  constructor(
    private readonly replicaId: string,
    private readonly publisher: EventPublisher,
    private readonly logger: Logger,
  ) {}

  /**
   * Queues the event; the publisher retries it through bus outages, so callers never
   * wait for it. `discriminator` makes the id deterministic (a retried decision is
   * stored once): e.g. the registry revision the decision was about.
   */
  emit(
    kind: DiscoveryEventKind,
    about: EventSubject,
    detail: string,
    discriminator: string,
  ): Promise<void> {
    const name = Kind[kind]?.toLowerCase() ?? String(kind);
    const target = about.serviceId ? `${about.serviceId}.${about.instanceId}` : 'replica';
    const eventId = `${this.replicaId}/${name}/${target}/${discriminator}`.slice(0, 256);
    return this.publisher
      .publish({
        source: 'discovery',
        event: {
          eventId,
          kind,
          occurredAtMs: Date.now(),
          replicaId: this.replicaId,
          serviceId: about.serviceId ?? '',
          instanceId: about.instanceId ?? '',
          status: (about.status ?? 0) as never,
          detail: detail.slice(0, 1024),
        },
      })
      .then(
        () => {},
        (error: Error) => {
          // Only a closing bus or a full queue gets here; the publisher logged the latter.
          this.logger.debug({ eventId, err: error.message }, 'discovery event not published');
        },
      );
  }
}
