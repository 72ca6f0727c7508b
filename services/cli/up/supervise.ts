/**
 * `halyard up` keeps what it started running, as systemd's `Restart=on-failure` does on a
 * real host (deploy/): the launcher or a nats-server that exits on its own is started
 * again after a short backoff, and the mesh keeps serving meanwhile. Failures in a row
 * back off longer; past the last interval `up` gives up on it. A process that stayed up
 * for a while was healthy: its failure count starts again.
 */
import { sleep } from '../../common/sleep.js';
import { afterExit, type RestartPolicy } from '../../launcher/restart-policy.js';
import { CliLogIds as Ids, type Logger } from '../log.js';

const UP_RESTART_POLICY: RestartPolicy = {
  intervalsMs: [500, 1_000, 2_000, 5_000, 5_000],
  minUptimeMs: 30_000,
};

/** One process `up` supervises. */
export interface Supervised {
  /** For humans: "the launcher", "nats-server n1". */
  readonly name: string;
  /**
   * Resolves when the current process has exited: `unexpected` unless `up` stopped it,
   * `detail` how it ended (for the report).
   */
  exited(): Promise<{ readonly unexpected: boolean; readonly detail: string }>;
  /** Starts it again; resolves once it is back (or throws why not). */
  restart(): Promise<void>;
}

export interface SupervisionOptions {
  readonly log: Logger;
  /** `up` is stopping: no more restarts. */
  readonly stopping: AbortSignal;
  /** Past the last interval; `up` decides what giving up on it means. */
  readonly onGiveUp: (message: string) => void;
  readonly policy?: RestartPolicy;
}

/** Watches `target` until `up` stops it or gives up on it. Never rejects. */
export async function supervise(target: Supervised, options: SupervisionOptions): Promise<void> {
  const { log, stopping, onGiveUp } = options;
  const policy = options.policy ?? UP_RESTART_POLICY;
  let failures = 0;
  let startedAt = Date.now();
  for (;;) {
    const { unexpected, detail } = await target.exited();
    if (!unexpected || stopping.aborted) return;
    const after = afterExit(policy, failures, Date.now() - startedAt);
    failures = after.failures;
    const { decision } = after;
    if (decision.action === 'give-up') {
      const message = `${target.name} exited (${detail}) ${decision.attempt} times in a row: giving up on it`;
      log.error(
        { msgId: Ids.superviseGaveUp, process: target.name, attempts: decision.attempt },
        message,
      );
      onGiveUp(message);
      return;
    }
    log.warn(
      {
        msgId: Ids.superviseRestarting,
        process: target.name,
        attempt: decision.attempt,
        delayMs: decision.delayMs,
      },
      `${target.name} exited unexpectedly (${detail}); restarting it in ${decision.delayMs} ms`,
    );
    try {
      await sleep(decision.delayMs, stopping);
    } catch {
      return; // `up` is stopping
    }
    if (stopping.aborted) return;
    startedAt = Date.now();
    try {
      await target.restart();
      log.info(
        { msgId: Ids.superviseRestarted, process: target.name, attempt: decision.attempt },
        `${target.name} restarted`,
      );
    } catch (err) {
      if (stopping.aborted) return;
      // The restart's own failure shows as the process's exit, counted on the next turn.
      log.warn(
        { msgId: Ids.superviseRestarting, process: target.name, err },
        `${target.name} did not come back: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
}

/** How a process ended, for the report. */
export function describeExit(code: number | null | undefined, signal: string | null | undefined) {
  if (signal) return `signal ${signal}`;
  return code === null || code === undefined ? 'ended' : `code ${code}`;
}
