/**
 * Release at logoff: an instance of a service with `lb.policy=user` ends its user's
 * sticky preference by answering a call of that user with `x-halyard-affinity: release`,
 * as a response header or a trailer. The header is the mesh's, like every `x-halyard-`
 * header: the gateway strips it before the client sees it, whoever sent it and whatever
 * it says. A release the gateway cannot act on (a call without a verified user, a
 * service of another policy, another value) changes nothing and is counted.
 */
import type { IncomingHttpHeaders } from 'node:http2';
import type { Logger } from 'pino';
import type { AffinityTable } from './affinity.js';
import { GatewayLogIds } from './log-ids.js';
import { gatewayMetrics } from './metrics.js';
import type { Route } from './routing-table.js';

export const AFFINITY_HEADER = 'x-halyard-affinity';
const RELEASE = 'release';

export type ReleaseOutcome = 'released' | 'no-user' | 'not-user-policy' | 'unknown-value';

/** The call the instance answered: whose preference it may release. */
export interface ReleasingCall {
  readonly route: Route;
  /** HMAC user key of the verified caller; undefined: anonymous. */
  readonly userKey: string | undefined;
  /** The instance that answered. */
  readonly instanceId: string;
}

export class AffinityReleases {
  constructor(
    private readonly affinity: Pick<AffinityTable, 'release'>,
    private readonly logger: Logger,
  ) {}

  /**
   * Strips `x-halyard-affinity` from response headers or trailers that hold it, and
   * releases the caller's preference when the instance asked for it.
   */
  take(headers: IncomingHttpHeaders | Record<string, string>, call: ReleasingCall): void {
    const value = headers[AFFINITY_HEADER];
    delete headers[AFFINITY_HEADER];
    const { route, userKey, instanceId } = call;
    const serviceId = route.serviceId;
    const outcome: ReleaseOutcome =
      value !== RELEASE
        ? 'unknown-value'
        : route.settings.policy !== 'user'
          ? 'not-user-policy'
          : userKey === undefined
            ? 'no-user'
            : 'released';
    gatewayMetrics.affinityReleases.labels(serviceId, outcome).inc();
    if (outcome === 'released') {
      this.affinity.release(serviceId, userKey!);
      this.logger.info(
        { msgId: GatewayLogIds.affinityReleased, serviceId, instanceId, userKey },
        'sticky preference released by its instance: the next call of this user is balanced afresh',
      );
    } else {
      // Per call, at debug: the counter is what shows a misconfigured service.
      this.logger.debug(
        { msgId: GatewayLogIds.affinityReleaseIgnored, serviceId, instanceId, outcome },
        `${AFFINITY_HEADER} from an instance ignored`,
      );
    }
  }
}
