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
   * Queues the event; the publisher retries it through bus outages, so callers need
   * not wait for it. The id is deterministic: an event about an instance is named by
   * the instance and `discriminator` (e.g. the revision decided on), so replicas that
   * take the same decision store it once; an event about a replica is named by it.
   */
  emit(
    kind: DiscoveryEventKind,
    about: EventSubject,
    detail: string,
    discriminator: string,
  ): Promise<void> {
    const name = Kind[kind]?.toLowerCase() ?? String(kind);
    const target = about.serviceId ? `${about.serviceId}.${about.instanceId}` : this.replicaId;
    const eventId = `${name}/${target}/${discriminator}`.slice(0, 256);
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
          this.logger.debug({ eventId, err: error }, 'discovery event not published');
        },
      );
  }
}
