/**
 * Lifecycle transitions, told three times: as a LifecycleEvent on the bus, as a log
 * line with a stable message id, and to the ledger of running children (children.ts). Event ids are `<host>/<component>/<instance>/<run>/<seq>`:
 * the launcher run id and a per-run sequence make every real transition distinct,
 * and a republish of the same transition (a retry after a reconnect) carries the same
 * id, so the stream drops it as a duplicate.
 */

import type { Logger } from 'pino';
import type { EventPublisher, LifecycleEvent } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import type { ChildLedger } from './children.js';
import { LogIds } from './log-ids.js';
import { launcherMetrics } from './metrics.js';
import type { StartedSpec } from './spec.js';

export const Kind = halyard.launcher.v1.LifecycleEvent.Kind;
export type KindName = keyof typeof LogIdOfKind;

const LogIdOfKind = {
  STARTING: LogIds.starting,
  STARTED: LogIds.started,
  READY: LogIds.ready,
  EXITED: LogIds.exited,
  RESTARTING: LogIds.restarting,
  GAVE_UP: LogIds.gaveUp,
  STOPPING: LogIds.stopping,
  STOPPED: LogIds.stopped,
} as const;

export type Transition = Partial<
  Pick<
    LifecycleEvent,
    | 'pid'
    | 'port'
    | 'exitCode'
    | 'signal'
    | 'uptimeMs'
    | 'attempt'
    | 'delayMs'
    | 'reason'
    | 'processStart'
  >
>;

export class LifecycleRecorder {
  private seq = 0;
  private last: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly hostId: string,
    private readonly launcherId: string,
    private readonly publisher: EventPublisher,
    private readonly children: ChildLedger,
    private readonly logger: Logger,
  ) {}

  /** `started`: with STARTED, what the process was started as (kept with the running children). */
  record(
    kind: KindName,
    component: string,
    instance: number,
    details: Transition = {},
    started?: StartedSpec,
  ): void {
    const seq = ++this.seq;
    const event: LifecycleEvent = {
      eventId: `${this.hostId}/${component}/${instance}/${this.launcherId}/${seq}`,
      kind: Kind[kind],
      occurredAtMs: Date.now(),
      hostId: this.hostId,
      launcherId: this.launcherId,
      component,
      instance,
      pid: 0,
      port: 0,
      exitCode: 0,
      signal: '',
      uptimeMs: 0,
      attempt: 0,
      delayMs: 0,
      reason: '',
      processStart: 0,
      ...details,
    };
    launcherMetrics.transitions.inc({ component, kind: kind.toLowerCase() });
    this.children.apply(event, started);
    const level = kind === 'GAVE_UP' ? 'error' : kind === 'EXITED' ? 'warn' : 'info';
    this.logger[level](
      {
        msgId: LogIdOfKind[kind],
        event: kind.toLowerCase(),
        component,
        instance,
        eventId: event.eventId,
        ...details,
      },
      `${component}#${instance} ${kind.toLowerCase().replace('_', ' ')}`,
    );
    // The publisher keeps order and retries through elections; supervision never waits on it.
    this.last = this.publisher.publish({ source: 'lifecycle', event }).catch((error) => {
      this.logger.error(
        { msgId: LogIds.eventNotPublished, eventId: event.eventId, err: error },
        'lifecycle event not published',
      );
    });
  }

  /** Resolves once every event recorded so far, and the running children, were stored (or given up on). */
  flushed(): Promise<unknown> {
    return Promise.all([this.last, this.children.flushed()]);
  }
}
