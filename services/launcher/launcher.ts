/**
 * A host's launcher, put together: config, recovery of the children a previous run
 * left, supervision, lifecycle events and the running children on the bus, and control
 * over gRPC and the bus.
 */
import { randomBytes } from 'node:crypto';
import { Server } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  type Bus,
  CONTROL_ALL,
  type CommandResult,
  type ComponentRequest,
  ControlError,
  KeyChangedError,
  type KvStore,
  type LauncherStatus,
  type LocalView,
  RegistryBucket,
  type Served,
  type ServiceInstance,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { ConfigError } from '../common/config.js';
import { ChildLedger } from './children.js';
import {
  type ComponentConfig,
  forHost,
  type LauncherConfig,
  loadLauncherConfig,
} from './config.js';
import { addGrpcService, bindGrpc, ControlGuard, type Controls, serveOnBus } from './control.js';
import { LifecycleRecorder } from './lifecycle.js';
import { LogIds } from './log-ids.js';
import { MeshFollower, type MeshSpec, type MeshVersions, missingFiles } from './mesh-follower.js';
import { trackChildren } from './metrics.js';
import { findLeftovers, outdatedAdoptions, settleLeftovers } from './recovery.js';
import { RolloutBoard, type RolloutRecords } from './rollouts.js';
import { type Adoptable, Supervisor } from './supervisor.js';

export const VERSION = '0.1.0';

export interface LauncherOptions {
  /** Re-read by `refresh`. */
  readonly configFile: string;
  /** Already loaded from `configFile`; loaded by `start` when absent. */
  readonly config?: LauncherConfig;
  /** Overrides the config's `hostId`. */
  readonly hostId?: string;
  readonly bus: Bus;
  readonly logger: Logger;
  /** gRPC control address; default 127.0.0.1:0 (a free port). */
  readonly grpcAddress?: string;
  /**
   * `bus` mode: the components come from the mesh configuration versions on the bus
   * (the file gives only this host's settings) and each version is applied as it comes.
   */
  readonly mesh?: MeshSource;
}

/** Where a launcher in `bus` mode finds the mesh configuration and its rollouts. */
export interface MeshSource {
  readonly versions: MeshVersions;
  readonly parse: (content: string, source: string) => MeshSpec;
  readonly rollouts: RolloutRecords;
  /** How often a host waiting for its turn looks again. */
  readonly pollMs?: number;
}

const { UP, DRAINING } = halyard.discovery.v1.InstanceStatus;
/** A renewal every lease/3 cannot keep winning this many leader reads in a row. */
const MARK_DRAINING_ATTEMPTS = 5;
const { State } = halyard.launcher.v1.ProcessStatus;

export class Launcher implements Controls {
  readonly startedAtMs = Date.now();
  readonly recorder: LifecycleRecorder;
  readonly supervisor: Supervisor;
  grpcPort = 0;
  private readonly grpc = new Server();
  private served: Served | undefined;
  private registry:
    | { store: KvStore<ServiceInstance>; view: LocalView<ServiceInstance> }
    | undefined;
  private readonly untrack: () => void;
  private commands: Promise<unknown> = Promise.resolve();
  private follower: MeshFollower | undefined;

  private constructor(
    private readonly options: LauncherOptions,
    readonly hostId: string,
    readonly launcherId: string,
    private config: LauncherConfig,
    private readonly children: ChildLedger,
  ) {
    const { bus, logger } = options;
    this.recorder = new LifecycleRecorder(hostId, launcherId, bus.publisher(), children, logger);
    this.supervisor = new Supervisor({
      hostId,
      address: config.address,
      recorder: this.recorder,
      logger,
      registry: {
        isUp: (serviceId, port) => this.registered(serviceId, port)?.status === UP,
        markDraining: (serviceId, port) => this.markDraining(serviceId, port),
      },
    });
    this.untrack = trackChildren(() =>
      this.supervisor.status().map((p) => (State[p.state] ?? 'unknown').toLowerCase()),
    );
  }

  /** Loads the config (ConfigError lists every problem), recovers, starts, serves control. */
  static async start(options: LauncherOptions): Promise<Launcher> {
    const config = options.config ?? (await loadLauncherConfig(options.configFile));
    const hostId = options.hostId ?? config.hostId;
    if (!hostId || hostId === CONTROL_ALL) {
      throw new ConfigError(options.configFile, [
        hostId
          ? 'hostId: "all" addresses every launcher; pick another'
          : 'hostId: required (in the file or --host-id)',
      ]);
    }
    const launcherId = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const children = await ChildLedger.open(options.bus, hostId, launcherId, options.logger);
    const launcher = new Launcher(options, hostId, launcherId, config, children);
    await launcher.run();
    return launcher;
  }

  private async run(): Promise<void> {
    const { bus, logger, mesh } = this.options;
    const board = mesh && new RolloutBoard(mesh.rollouts, this.hostId, this.launcherId);
    const initial = mesh && board && (await this.latestMeshVersion(mesh, board));
    if (initial) {
      const { components, recovery = this.config.recovery } = initial.spec;
      this.config = { ...this.config, components, recovery };
    }
    const configs = forHost(this.config, this.hostId);
    const leftovers = await findLeftovers(bus, this.children, this.hostId, logger);
    this.children.carryOver(leftovers);
    const { adoptable, outdated } = await outdatedAdoptions(
      await settleLeftovers(leftovers, configs, this.config.recovery, this.recorder, logger),
      configs,
      (version) => (mesh ? this.meshConfigs(mesh, version) : Promise.resolve(undefined)),
    );
    for (const a of outdated) {
      const { configVersion } = a.started;
      logger.warn(
        {
          msgId: LogIds.adoptedOutdated,
          component: a.component,
          instance: a.instance,
          configVersion,
        },
        `${a.component}#${a.instance} was adopted running what it was started with` +
          `${configVersion ? ` (version ${configVersion})` : ''}, not what the configuration runs now: ` +
          (mesh ? 'it is replaced by a rollout' : '`refresh` replaces it'),
      );
    }
    await this.watchRegistryIfNeeded(configs);
    // Bound before any child starts: a taken control port fails the start with nothing to clean up.
    const access = this.config.control;
    addGrpcService(this.grpc, this, new ControlGuard(access, logger));
    this.grpcPort = await bindGrpc(
      this.grpc,
      this.options.grpcAddress ?? '127.0.0.1:0',
      access.tls,
    );
    if (!access.tls && access.tokens.length > 0) {
      logger.warn(
        { msgId: LogIds.plaintextTokens, grpcPort: this.grpcPort },
        'control tokens are accepted without TLS: use this only on loopback or a trusted network',
      );
    }
    try {
      await this.supervisor.startAll(configs, adoptable, initial?.version ?? 0);
      // A version published with --force restarts every instance started before it.
      const behind = adoptable.filter(
        (a) =>
          outdated.includes(a) ||
          (initial?.restartUnchanged && a.started.configVersion < initial.version),
      );
      if (mesh && board) await this.followMesh(mesh, board, initial?.version ?? 0, behind);
      this.served = await serveOnBus(bus, this.hostId, this);
    } catch (error) {
      await this.shutdown();
      throw error;
    }
    logger.info(
      {
        msgId: LogIds.launcherStarted,
        hostId: this.hostId,
        launcherId: this.launcherId,
        grpcPort: this.grpcPort,
        components: this.supervisor.names(),
      },
      `launcher ${this.launcherId} on host ${this.hostId} started`,
    );
  }

  /** Stops serving, stops every child (reverse dependency order) and waits for the events to be stored. */
  async shutdown(): Promise<void> {
    const { logger } = this.options;
    logger.info(
      { msgId: LogIds.launcherStopping, launcherId: this.launcherId },
      'launcher stopping',
    );
    this.served?.stop();
    this.grpc.forceShutdown();
    await this.follower?.stop();
    await this.supervisor.stopAll('launcher stopping');
    this.registry?.view.stop();
    this.untrack();
    await this.recorder.flushed();
    logger.info({ msgId: LogIds.launcherStopped, launcherId: this.launcherId }, 'launcher stopped');
  }

  display(): LauncherStatus {
    return {
      hostId: this.hostId,
      launcherId: this.launcherId,
      startedAtMs: this.startedAtMs,
      processes: this.supervisor.status(),
      components: this.supervisor.names(),
      version: VERSION,
    };
  }

  start(request: ComponentRequest): Promise<CommandResult> {
    return this.exclusive(async () =>
      this.result(this.supervisor.start(request.component, request.instance)),
    );
  }

  stop(request: ComponentRequest): Promise<CommandResult> {
    return this.exclusive(async () =>
      this.result(await this.supervisor.stop(request.component, request.instance)),
    );
  }

  restart(request: ComponentRequest): Promise<CommandResult> {
    return this.exclusive(async () =>
      this.result(await this.supervisor.restart(request.component, request.instance)),
    );
  }

  /** Reloads the file; an invalid one is rejected with every problem and changes nothing. */
  refresh(): Promise<CommandResult> {
    if (this.options.mesh) {
      return Promise.reject(
        new ControlError(
          'FAILED_PRECONDITION',
          'this launcher follows the mesh configuration on the bus: change it with `halyard config apply`',
        ),
      );
    }
    return this.exclusive(() => this.applyFile());
  }

  /**
   * The latest mesh configuration version, when this host can run it: one that does not
   * validate or names a file missing here is reported FAILED and the host starts
   * nothing from it (it applies the next version that it can run).
   */
  private async latestMeshVersion(
    mesh: MeshSource,
    board: RolloutBoard,
  ): Promise<{ version: number; spec: MeshSpec; restartUnchanged: boolean } | undefined> {
    const { logger } = this.options;
    const latest = await mesh.versions.latest();
    if (!latest) {
      logger.warn(
        { msgId: LogIds.noMeshVersion },
        'no mesh configuration on the bus yet: running nothing until one is applied',
      );
      return undefined;
    }
    let problem: string;
    try {
      const spec = mesh.parse(latest.content, `mesh configuration version ${latest.version}`);
      const missing = await missingFiles(forHost(spec, this.hostId));
      if (missing.length === 0) {
        return { version: latest.version, spec, restartUnchanged: !!latest.restartUnchanged };
      }
      problem = `missing on host ${this.hostId}: ${missing.join('; ')}`;
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problem = error.message;
    }
    logger.error({ msgId: LogIds.meshVersionFailed, version: latest.version }, problem);
    await board.report(latest.version, 'FAILED', `${problem}; nothing started`);
    return undefined;
  }

  /**
   * Follows the versions after `version`, the one this host started with. While adopted
   * children are `behind` it (they run an older spec, or were started before a version
   * that restarts every instance), it is not applied yet: the follower rolls them like
   * any change, and reports it applied once they are replaced.
   */
  private async followMesh(
    mesh: MeshSource,
    board: RolloutBoard,
    version: number,
    behind: readonly Adoptable[],
  ): Promise<void> {
    const applied =
      behind.length === 0
        ? version
        : Math.max(0, Math.min(version - 1, ...behind.map((a) => a.started.configVersion)));
    if (applied === version && version > 0)
      await board.report(version, 'APPLIED', 'started with it');
    this.follower = new MeshFollower({
      hostId: this.hostId,
      versions: mesh.versions,
      parse: mesh.parse,
      board,
      supervisor: this.supervisor,
      logger: this.options.logger,
      prepare: (configs) => this.watchRegistryIfNeeded(configs),
      exclusive: (command) => this.exclusive(command),
      applied,
      pollMs: mesh.pollMs,
    });
    await this.follower.start();
  }

  /**
   * This host's components in configuration version `version`, when it can be read: the
   * config adopted children were started with, to go back to if their replacement fails.
   * Not finding it only takes that fallback away, so it never stops the start.
   */
  private async meshConfigs(
    mesh: MeshSource,
    version: number,
  ): Promise<Map<string, ComponentConfig> | undefined> {
    try {
      const found = await mesh.versions.get(version);
      if (!found) return undefined;
      return forHost(
        mesh.parse(found.content, `mesh configuration version ${version}`),
        this.hostId,
      );
    } catch (error) {
      this.options.logger.warn(
        { msgId: LogIds.meshVersionUnread, version, err: error },
        `mesh configuration version ${version} could not be read: adopted children started with it have no config to go back to`,
      );
      return undefined;
    }
  }

  /**
   * Commands that change the running set run one after another (two rolling restarts
   * of one component must not interleave); `display` never waits.
   */
  private exclusive<T>(command: () => Promise<T>): Promise<T> {
    const run = this.commands.then(command);
    this.commands = run.catch(() => undefined);
    return run;
  }

  private async applyFile(): Promise<CommandResult> {
    const { logger, configFile } = this.options;
    let config: LauncherConfig;
    try {
      config = await loadLauncherConfig(configFile);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      logger.warn({ msgId: LogIds.refreshRejected, problems: error.problems }, 'refresh rejected');
      throw new ControlError('INVALID_ARGUMENT', error.message, { cause: error });
    }
    const configs = forHost(config, this.hostId);
    await this.watchRegistryIfNeeded(configs);
    const plan = this.supervisor.plan(configs);
    await this.supervisor.apply(configs, plan);
    this.config = config;
    const detail = (['added', 'removed', 'scaled', 'changed', 'unchanged'] as const)
      .map((k) => `${k}: ${plan[k].join(',') || '-'}`)
      .join('; ');
    logger.info({ msgId: LogIds.refreshApplied, ...plan }, `refresh applied (${detail})`);
    return this.result(detail);
  }

  private result(detail: string): CommandResult {
    return { accepted: true, detail, status: this.display() };
  }

  /** Discovery's registry is read only by launchers that run a component probed through it. */
  private async watchRegistryIfNeeded(configs: Map<string, ComponentConfig>): Promise<void> {
    const needed = [...configs.values()].some((c) => c.readiness && 'registered' in c.readiness);
    if (!needed || this.registry) return;
    const store = await this.options.bus.store(RegistryBucket);
    this.registry = { store, view: store.view() };
    await this.registry.view.ready;
  }

  /** This host's registration of `serviceId` on `port`, from the registry view. */
  private registered(serviceId: string, port: number): ServiceInstance | undefined {
    for (const i of this.registry?.view.values() ?? []) {
      if (i.serviceId === serviceId && i.hostId === this.hostId && i.address.endsWith(`:${port}`)) {
        return i;
      }
    }
    return undefined;
  }

  /**
   * A compare-and-set on the leader's value, so that a renewal landing meanwhile is
   * neither overwritten by an older copy nor able to undo the mark (a renewal keeps
   * the status it reads).
   */
  private async markDraining(serviceId: string, port: number): Promise<void> {
    const entry = this.registered(serviceId, port);
    if (!entry || !this.registry) return;
    const { store } = this.registry;
    for (let attempt = 1; attempt <= MARK_DRAINING_ATTEMPTS; attempt++) {
      const current = await store.get(RegistryBucket.key(entry));
      if (!current || current.value.status === DRAINING) return;
      try {
        await store.update({ ...current.value, status: DRAINING }, current.revision);
        return;
      } catch (error) {
        if (!(error instanceof KeyChangedError)) throw error;
      }
    }
    this.options.logger.warn(
      { msgId: LogIds.drainMarkContended, serviceId, port, attempts: MARK_DRAINING_ATTEMPTS },
      'instance not marked DRAINING: its registration kept changing; stopping it anyway',
    );
  }
}
