/**
 * A gateway of several processes (`workers: auto | N`), on Node's cluster module: the
 * workers share the listening port and the primary hands each new client connection to
 * the next worker in turn. Each worker is a whole `Gateway` with its own bus
 * connection and views (so each one holds the sticky preferences: see README.md for
 * what a worker costs). The primary routes nothing; it
 *   - restarts a worker that exits (at once, then backing off while it keeps failing
 *     before it is ready),
 *   - serves the admin port: `/readyz` is ready when every worker is, `/metrics` is the
 *     workers' metrics summed (prom-client's AggregatorRegistry),
 *   - registers the gateway in discovery once, when every worker is first ready,
 *   - on SIGTERM leaves the registry and drains every worker (each stops as a single
 *     gateway does), then exits.
 */
import cluster, { type Worker } from 'node:cluster';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import { AggregatorRegistry, Counter, collectDefaultMetrics, Registry } from 'prom-client';
import { type AdminServer, startAdmin } from '../common/admin.js';
import { cappedExponential, type ExponentialBackoff } from '../common/backoff.js';
import { type StopResult, stopProcess } from '../common/stop-process.js';
import type { SelfRegistration } from '../discovery/self-registration.js';
import type { GatewayConfig } from './config.js';
import { GatewayLogIds } from './log-ids.js';
import { registerWorkerCalls } from './metrics.js';
import { registerGateway } from './registration.js';

/** Set by the primary in each worker's environment: its number, 1 to N, kept across restarts. */
const WORKER_NUMBER_ENV = 'HALYARD_GATEWAY_WORKER_NUMBER';
/** What a worker tells the primary once its views are loaded and it listens. */
const READY_MESSAGE = 'halyard-gateway-worker-ready';
/**
 * A worker that exits is restarted after 100 ms, twice as long each time it exits again
 * before it is ready, up to 10 s. Never given up on: the other workers serve the port
 * meanwhile and `/readyz` says one is missing. (Not the launcher's restart policy, which
 * gives up after its last interval and judges health by uptime: a worker's health is
 * its readiness, which may take long while it reads a large affinity bucket.)
 */
const RESTART_BACKOFF: ExponentialBackoff = { baseMs: 100, maxMs: 10_000 };
/** Beyond `stopTimeoutSeconds`: a worker's bus close and its bounded STOPPING event. */
const STOP_MARGIN_MS = 5_000;

/** How many workers the setting asks for on this machine. */
export function workerCount(setting: GatewayConfig['workers']): number {
  return setting === 'auto' ? availableParallelism() : setting;
}

/** This process's worker number when it is a worker of a gateway of several. */
export function workerNumber(): number | undefined {
  return cluster.isWorker ? Number(process.env[WORKER_NUMBER_ENV]) : undefined;
}

/**
 * The worker's side, once its gateway is ready: answers the primary's metrics requests
 * (with this process's own metrics, and its calls labelled with its number) and says
 * it is ready.
 */
export function reportWorkerReady(worker: number, port: number): void {
  // Constructing one is what makes prom-client answer the primary in a worker.
  new AggregatorRegistry();
  collectDefaultMetrics();
  registerWorkerCalls(worker);
  process.send?.({ type: READY_MESSAGE, port });
}

interface Slot {
  readonly number: number;
  worker: Worker | undefined;
  ready: boolean;
  /** Exits since it was last ready: how long the next restart waits. */
  failures: number;
  restart: NodeJS.Timeout | undefined;
}

export class GatewayPrimary {
  private readonly slots: Slot[];
  private readonly metrics = new AggregatorRegistry();
  /** The primary's own metrics, served after the workers' sum. */
  private readonly own = new Registry();
  private readonly restarts = new Counter({
    name: 'halyard_gateway_worker_restarts_total',
    help: 'Gateway workers restarted after they exited unexpectedly',
    registers: [this.own],
  });
  private admin: AdminServer | undefined;
  private registration: SelfRegistration | undefined;
  private port: number | undefined;
  private stopping = false;

  /** Forks the workers and opens the admin port; `/readyz` says when they are all ready. */
  static async start(
    config: GatewayConfig,
    count: number,
    logger: Logger,
  ): Promise<GatewayPrimary> {
    const primary = new GatewayPrimary(config, count, logger);
    primary.admin = await startAdmin({
      host: config.admin.host,
      port: config.admin.port,
      notReady: () => primary.notReady(),
      metrics: async () => (await primary.metrics.clusterMetrics()) + (await primary.own.metrics()),
    });
    logger.info(
      { msgId: GatewayLogIds.workersStarting, workers: count, adminPort: primary.admin.port },
      'gateway starting its workers',
    );
    for (const slot of primary.slots) primary.fork(slot);
    return primary;
  }

  private constructor(
    private readonly config: GatewayConfig,
    count: number,
    private readonly logger: Logger,
  ) {
    this.slots = Array.from({ length: count }, (_, i) => ({
      number: i + 1,
      worker: undefined,
      ready: false,
      failures: 0,
      restart: undefined,
    }));
  }

  get adminPort(): number {
    return this.admin?.port ?? 0;
  }

  /** Why this gateway should not get traffic, or undefined when it should. */
  notReady(): string | undefined {
    if (this.stopping) return 'is stopping';
    const ready = this.slots.filter((slot) => slot.ready).length;
    if (ready < this.slots.length) {
      return `is starting: ${ready} of ${this.slots.length} workers ready`;
    }
    return undefined;
  }

  private fork(slot: Slot): void {
    slot.restart = undefined;
    const worker = cluster.fork({ [WORKER_NUMBER_ENV]: String(slot.number) });
    slot.worker = worker;
    slot.ready = false;
    worker.on('message', (message: { type?: string; port?: number }) => {
      if (message.type === READY_MESSAGE) this.onReady(slot, worker, Number(message.port));
    });
    worker.once('exit', (code, signal) => this.onExit(slot, worker, code, signal));
  }

  private onReady(slot: Slot, worker: Worker, port: number): void {
    if (slot.worker !== worker) return;
    slot.ready = true;
    slot.failures = 0;
    this.port = port;
    this.logger.info(
      { msgId: GatewayLogIds.workerReady, worker: slot.number, pid: worker.process.pid, port },
      'gateway worker ready',
    );
    if (this.notReady() === undefined && this.registration === undefined) {
      this.logger.info(
        { msgId: GatewayLogIds.workersReady, workers: this.slots.length, port },
        'every gateway worker is ready',
      );
      this.register();
    }
  }

  private onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    slot.ready = false;
    if (this.stopping) return;
    const delayMs = cappedExponential(RESTART_BACKOFF, slot.failures);
    slot.failures += 1;
    this.restarts.inc();
    this.logger.warn(
      {
        msgId: GatewayLogIds.workerExited,
        worker: slot.number,
        pid: worker.process.pid,
        code,
        signal,
        restartInMs: delayMs,
      },
      'gateway worker exited: restarting it',
    );
    slot.restart = setTimeout(() => this.fork(slot), delayMs);
  }

  /** Into the registry once, when every worker routes calls. */
  private register(): void {
    if (this.stopping || this.port === undefined) return;
    this.registration = registerGateway(this.config, this.port, this.logger);
  }

  /**
   * Graceful stop: out of the registry while every worker drains (GOAWAY, calls in
   * flight finish within `stopTimeoutSeconds`); a worker still running after that and
   * a margin is killed.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const timeoutMs = this.config.stopTimeoutSeconds * 1000 + STOP_MARGIN_MS;
    this.logger.info(
      { msgId: GatewayLogIds.workersStopping, timeoutMs },
      'stopping: every gateway worker drains',
    );
    const deregistered = this.registration?.stop();
    const running: Worker[] = [];
    for (const slot of this.slots) {
      clearTimeout(slot.restart);
      if (slot.worker) running.push(slot.worker);
    }
    const stopped = await Promise.all(
      running.map(async (worker) => ({
        pid: worker.process.pid,
        ...(await stopWorker(worker, timeoutMs)),
      })),
    );
    const killed = stopped.filter((worker) => worker.killed).map((worker) => worker.pid);
    if (killed.length > 0) {
      this.logger.warn(
        { msgId: GatewayLogIds.workerStopTimedOut, pids: killed },
        'gateway workers still running after the stop timeout: killed',
      );
    }
    await deregistered;
    await this.admin?.close();
    this.logger.info({ msgId: GatewayLogIds.workersStopped }, 'gateway stopped');
  }
}

/** SIGTERM (the worker drains as a single gateway does), SIGKILL when `timeoutMs` passes first. */
function stopWorker(worker: Worker, timeoutMs: number): Promise<StopResult> {
  const child = worker.process;
  const exited =
    child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : once(child, 'exit');
  return stopProcess({ pid: child.pid ?? 0, exited }, 'SIGTERM', timeoutMs);
}
