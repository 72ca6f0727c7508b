/**
 * Recovery: a launcher that was killed left its children running. Its successor reads
 * the children its predecessor recorded on the bus (children.ts) or, where no launcher
 * of the host ever recorded any, replays the host's lifecycle events: every process
 * STARTED and never reported EXITED or STOPPED. Either way it checks that each pid still
 * is that very process — its start time and the launcher's marker in its environment: a
 * pid may have been reused, and a record proves nothing by itself — and stops or adopts it.
 */
import type { Logger } from 'pino';
import type { Bus, RunningChild } from '../../bus/index.js';
import type { ChildLedger } from './children.js';
import type { ComponentConfig } from './config.js';
import type { LifecycleRecorder } from './lifecycle.js';
import { Kind } from './lifecycle.js';
import { LogIds } from './log-ids.js';
import { launcherMetrics } from './metrics.js';
import { adoptChild, isLauncherChild, launcherMarker } from './process.js';
import { specDigest } from './spec.js';
import type { Adoptable } from './supervisor.js';

export type Leftover = RunningChild;

/** Processes the host's launcher left running: those recorded, or replayed, that really are. */
export async function findLeftovers(
  bus: Bus,
  ledger: ChildLedger,
  hostId: string,
  logger: Logger,
): Promise<Leftover[]> {
  const recorded = await ledger.recorded();
  const replayed = recorded ? undefined : await replayLeftovers(bus, hostId);
  const candidates = recorded ?? replayed?.candidates ?? [];
  const leftovers = candidates.filter((l) => {
    const marker = launcherMarker(hostId, l.component, l.instance);
    const same = l.marker === marker.value && isLauncherChild(l.pid, l.processStart, marker);
    if (!same) {
      logger.info(
        { msgId: LogIds.leftoverGone, component: l.component, instance: l.instance, pid: l.pid },
        `${l.component}#${l.instance} (pid ${l.pid}) of launcher run ${l.launcherId} is gone (or the pid is not that child)`,
      );
    }
    return same;
  });
  if (replayed) {
    logger.info(
      { msgId: LogIds.replayed, events: replayed.events, leftovers: leftovers.length },
      `no children recorded for host ${hostId}: replayed ${replayed.events} lifecycle events, ${leftovers.length} child(ren) still running`,
    );
  } else {
    logger.info(
      { msgId: LogIds.recoveredRecorded, recorded: candidates.length, leftovers: leftovers.length },
      `host ${hostId}'s launcher recorded ${candidates.length} child(ren): ${leftovers.length} still running`,
    );
  }
  return leftovers;
}

/** What the host's lifecycle events say is running: the fallback where nothing was recorded. */
async function replayLeftovers(
  bus: Bus,
  hostId: string,
): Promise<{ candidates: Leftover[]; events: number }> {
  const alive = new Map<string, Leftover>();
  const events = await bus.replay({ kind: 'lifecycle', filter: `${hostId}.>` }, ({ event: e }) => {
    const key = `${e.component}/${e.instance}`;
    if (e.kind === Kind.STARTED) {
      alive.set(key, {
        component: e.component,
        instance: e.instance,
        pid: e.pid,
        processStart: e.processStart,
        port: e.port,
        marker: launcherMarker(hostId, e.component, e.instance).value,
        launcherId: e.launcherId,
        // Events do not say what a child was started as: an adopted one counts as outdated.
        configVersion: 0,
        specDigest: '',
      });
    } else if (
      (e.kind === Kind.EXITED || e.kind === Kind.STOPPED) &&
      alive.get(key)?.pid === e.pid
    ) {
      alive.delete(key);
    }
  });
  return { candidates: [...alive.values()], events };
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
        const started = { configVersion: l.configVersion, specDigest: l.specDigest };
        recorder.record(
          'STARTED',
          l.component,
          l.instance,
          {
            pid: l.pid,
            port: l.port,
            processStart: l.processStart,
            reason: `adopted from launcher run ${l.launcherId}`,
          },
          started,
        );
        adopted.push({
          component: l.component,
          instance: l.instance,
          port: l.port,
          child,
          started,
        });
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

/**
 * The adopted children that do not run what `configs` asks for now, each with the config
 * it was started with when that is known: the config of its component in the version it
 * recorded (`configsOf`), if that config is indeed its process (the same digest). A
 * rollout replaces them; one whose config is not known has nothing to go back to if its
 * replacement fails.
 */
export async function outdatedAdoptions(
  adopted: readonly Adoptable[],
  configs: Map<string, ComponentConfig>,
  configsOf: (version: number) => Promise<Map<string, ComponentConfig> | undefined>,
): Promise<{ adoptable: Adoptable[]; outdated: Adoptable[] }> {
  const versions = new Map<number, Promise<Map<string, ComponentConfig> | undefined>>();
  const resolved = await Promise.all(
    adopted.map(async (a): Promise<Adoptable> => {
      const now = configs.get(a.component);
      const { configVersion, specDigest: digest } = a.started;
      if (!now || digest === specDigest(now)) return a;
      if (configVersion === 0 || digest === '') return a;
      if (!versions.has(configVersion)) versions.set(configVersion, configsOf(configVersion));
      const then = (await versions.get(configVersion))?.get(a.component);
      if (!then || specDigest(then) !== digest) return a;
      return { ...a, startedWith: { config: then, version: configVersion } };
    }),
  );
  const outdated = resolved.filter((a) => {
    const now = configs.get(a.component);
    return now !== undefined && a.started.specDigest !== specDigest(now);
  });
  return { adoptable: resolved, outdated };
}
