/**
 * What this host's launcher runs now, kept on the bus: the value of the host's key in
 * the launchers bucket, rewritten whenever the set of running children changes. It is
 * the set a replay of the host's lifecycle events describes (STARTED adds a child,
 * EXITED or STOPPED of that pid removes it), but unlike the events it never ages out
 * of the stream, so a launcher restarted after any time finds the children it left.
 */
import type { Logger } from 'pino';
import {
  type Bus,
  type HostChildren,
  Keys,
  type KvStore,
  LaunchersBucket,
  type LifecycleEvent,
  type RunningChild,
} from '../../bus/index.js';
import { Kind } from './lifecycle.js';
import { LogIds } from './log-ids.js';
import { launcherMarker } from './process.js';
import type { StartedSpec } from './spec.js';

export class ChildLedger {
  private readonly children = new Map<string, RunningChild>();
  private written: Promise<void> = Promise.resolve();
  private writePending = false;

  private constructor(
    private readonly store: KvStore<HostChildren>,
    private readonly hostId: string,
    private readonly launcherId: string,
    private readonly logger: Logger,
  ) {}

  static async open(bus: Bus, hostId: string, launcherId: string, logger: Logger) {
    return new ChildLedger(await bus.store(LaunchersBucket), hostId, launcherId, logger);
  }

  /** The children a launcher of this host last recorded; undefined when none ever did. */
  async recorded(): Promise<RunningChild[] | undefined> {
    return (await this.store.get(Keys.launcherChildren(this.hostId)))?.value.children;
  }

  /**
   * Takes on the children a previous run left running, until each is adopted (a new
   * STARTED) or stopped: a launcher killed while it settles them still finds them.
   */
  carryOver(leftovers: readonly RunningChild[]): void {
    for (const child of leftovers) this.children.set(keyOf(child), child);
    this.schedule();
  }

  /** Follows one transition of this launcher's children; `started` comes with STARTED. */
  apply(event: LifecycleEvent, started?: StartedSpec): void {
    const key = keyOf(event);
    if (event.kind === Kind.STARTED) {
      this.children.set(key, {
        component: event.component,
        instance: event.instance,
        pid: event.pid,
        processStart: event.processStart,
        port: event.port,
        marker: launcherMarker(this.hostId, event.component, event.instance).value,
        launcherId: event.launcherId,
        configVersion: started?.configVersion ?? 0,
        specDigest: started?.specDigest ?? '',
      });
    } else if (
      (event.kind === Kind.EXITED || event.kind === Kind.STOPPED) &&
      this.children.get(key)?.pid === event.pid
    ) {
      this.children.delete(key);
    } else {
      return;
    }
    this.schedule();
  }

  /** Resolves once the set as it is now is stored (or given up on). */
  flushed(): Promise<void> {
    return this.written;
  }

  /**
   * One write at a time, each of the set as it is when the write begins: changes made
   * during a write are coalesced into the next one, and the last write is the last set.
   */
  private schedule(): void {
    if (this.writePending) return;
    this.writePending = true;
    this.written = this.written.then(async () => {
      this.writePending = false;
      const children = [...this.children.values()];
      try {
        await this.store.put({
          hostId: this.hostId,
          launcherId: this.launcherId,
          updatedAtMs: Date.now(),
          children,
        });
      } catch (error) {
        this.logger.error(
          { msgId: LogIds.childrenNotRecorded, children: children.length, err: error },
          'running children not recorded on the bus',
        );
      }
    });
  }
}

const keyOf = (child: { component: string; instance: number }) =>
  `${child.component}/${child.instance}`;
