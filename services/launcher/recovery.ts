/**
 * Recovery by replay: a launcher that was killed left its children running. Its
 * successor replays the host's lifecycle events, finds every process that was
 * STARTED and never reported EXITED or STOPPED, checks that the pid still is that
 * very process — its start time and the launcher's marker in its environment: a pid
 * may have been reused, and an event proves nothing by itself — and stops or adopts it.
 */
import type { Logger } from 'pino';
import type { Bus } from '../../bus/index.js';
import type { ComponentConfig } from './config.js';
import type { LifecycleRecorder } from './lifecycle.js';
import { Kind } from './lifecycle.js';
import { LogIds } from './log-ids.js';
import { launcherMetrics } from './metrics.js';
import { adoptChild, isLauncherChild, launcherMarker } from './process.js';
import type { Adoptable } from './supervisor.js';

export interface Leftover {
  readonly component: string;
  readonly instance: number;
  readonly pid: number;
  readonly port: number;
  readonly processStart: number;
  readonly launcherId: string;
}

/** Processes the host's past events say are alive, and that really are. */
export async function findLeftovers(bus: Bus, hostId: string, logger: Logger): Promise<Leftover[]> {
  const alive = new Map<string, Leftover>();
  const replayed = await bus.replay(
    { kind: 'lifecycle', filter: `${hostId}.>` },
    ({ event: e }) => {
      const key = `${e.component}/${e.instance}`;
      if (e.kind === Kind.STARTED) alive.set(key, { ...e, processStart: e.processStart });
      else if (
        (e.kind === Kind.EXITED || e.kind === Kind.STOPPED) &&
        alive.get(key)?.pid === e.pid
      ) {
        alive.delete(key);
      }
    },
  );
  const leftovers = [...alive.values()].filter((l) => {
    const same = isLauncherChild(
      l.pid,
      l.processStart,
      launcherMarker(hostId, l.component, l.instance),
    );
    if (!same) {
      logger.info(
        { msgId: LogIds.leftoverGone, component: l.component, instance: l.instance, pid: l.pid },
        `${l.component}#${l.instance} (pid ${l.pid}) of launcher run ${l.launcherId} is gone (or the pid is not that child)`,
      );
    }
    return same;
  });
  logger.info(
    { msgId: LogIds.replayed, events: replayed, leftovers: leftovers.length },
    `replayed ${replayed} lifecycle events of host ${hostId}: ${leftovers.length} child(ren) still running`,
  );
  return leftovers.map(({ component, instance, pid, port, processStart, launcherId }) => ({
    component,
    instance,
    pid,
    port,
    processStart,
    launcherId,
  }));
}

/**
 * Deals with leftovers before anything starts: with `adopt`, those the config still
 * runs are returned for their instances to take over; every other one is stopped, its
 * stop recorded like any other.
 */
export async function settleLeftovers(
  leftovers: Leftover[],
  configs: Map<string, ComponentConfig>,
  mode: 'stop' | 'adopt',
  recorder: LifecycleRecorder,
  logger: Logger,
): Promise<Adoptable[]> {
  const adopted: Adoptable[] = [];
  await Promise.all(
    leftovers.map(async (l) => {
      const config = configs.get(l.component);
      const child = adoptChild(l.pid, l.processStart);
      const fields = { component: l.component, instance: l.instance, pid: l.pid };
      if (mode === 'adopt' && config && l.instance <= config.instances) {
        launcherMetrics.leftovers.inc({ action: 'adopted' });
        logger.info(
          { msgId: LogIds.leftoverAdopted, ...fields },
          `${l.component}#${l.instance} adopted`,
        );
        recorder.record('STARTED', l.component, l.instance, {
          pid: l.pid,
          port: l.port,
          processStart: l.processStart,
          reason: `adopted from launcher run ${l.launcherId}`,
        });
        adopted.push({ component: l.component, instance: l.instance, port: l.port, child });
        return;
      }
      launcherMetrics.leftovers.inc({ action: 'stopped' });
      logger.warn(
        { msgId: LogIds.leftoverStopped, ...fields },
        `stopping ${l.component}#${l.instance} left by launcher run ${l.launcherId}`,
      );
      const reason = `left running by launcher run ${l.launcherId}`;
      recorder.record('STOPPING', l.component, l.instance, { pid: l.pid, port: l.port, reason });
      const stop = config?.stop ?? { signal: 'SIGTERM' as const, timeoutSeconds: 20 };
      const { killed } = await child.stop(stop.signal, stop.timeoutSeconds * 1000);
      recorder.record('STOPPED', l.component, l.instance, {
        pid: l.pid,
        port: l.port,
        exitCode: -1,
        reason: killed ? `${reason}; killed after ${stop.timeoutSeconds} s` : reason,
      });
    }),
  );
  return adopted;
}
