/**
 * A launcher in `bus` mode: follows the versions of the mesh configuration and applies
 * each one's part for its host, reporting in the version's rollout record where it is.
 *
 * A version whose only differences for this host are components or instances added or
 * removed is applied at once. One that changes a component's processes (command, args,
 * env, version…) waits for this host's turn (rollouts.ts), then replaces the outdated
 * instances one at a time; at the first step that fails, the instance goes back to what
 * it ran, the host reports FAILED and the rollout halts. A version that names a file
 * missing on this host is refused before anything changes. Only the newest version is
 * worked on: a host waiting for its turn when a newer one arrives moves on to it.
 */
import { access, constants, stat } from 'node:fs/promises';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { type ComponentConfig, forHost } from './config.js';
import { LogIds } from './log-ids.js';
import { HostState, type RolloutBoard } from './rollouts.js';
import type { Supervisor } from './supervisor.js';

/** One published version of the mesh configuration (bus/mesh-config.ts). */
export interface MeshVersion {
  readonly version: number;
  readonly content: string;
  /** Roll also the instances whose process it does not change (`config apply --force`). */
  readonly restartUnchanged?: boolean;
}

/** Where the versions come from (the bus's MeshConfigStore). */
export interface MeshVersions {
  latest(): Promise<MeshVersion | undefined>;
  get(version: number): Promise<MeshVersion | undefined>;
  /** The latest version first, then every newer one. */
  watch(onVersion: (version: MeshVersion) => void): Promise<{ stop(): Promise<void> }>;
}

/** The parts of a mesh configuration a launcher applies. */
export interface MeshSpec {
  readonly components: Record<string, ComponentConfig>;
  readonly rollout: { readonly healthySeconds: number; readonly stepTimeoutSeconds: number };
  /** What a restarted launcher does with the children it finds; absent: the host's setting. */
  readonly recovery?: 'stop' | 'adopt';
}

export interface MeshFollowerOptions {
  readonly hostId: string;
  readonly versions: MeshVersions;
  /** Validates a version's content; throws (ConfigError) with every problem. */
  readonly parse: (content: string, source: string) => MeshSpec;
  readonly board: RolloutBoard;
  readonly supervisor: Supervisor;
  readonly logger: Logger;
  /** Run before a version's components start (e.g. watching discovery's registry). */
  readonly prepare: (configs: Map<string, ComponentConfig>) => Promise<void>;
  /** Runs a change of the running set after the launcher's other commands. */
  readonly exclusive: <T>(command: () => Promise<T>) => Promise<T>;
  /** The version whose processes run now (0: none). */
  readonly applied: number;
  /** How often a waiting host looks at the rollout record again. */
  readonly pollMs?: number;
}

type Outcome = 'applied' | 'failed' | 'waiting' | 'skipped' | 'superseded';

export class MeshFollower {
  private applied: number;
  private newest: MeshVersion | undefined;
  private last: { version: number; outcome: Outcome } | undefined;
  private stopped = false;
  private wake: () => void = () => {};
  private loop: Promise<void> = Promise.resolve();
  private watching: { stop(): Promise<void> } | undefined;

  constructor(private readonly options: MeshFollowerOptions) {
    this.applied = options.applied;
  }

  /** The version whose processes this host runs (0: none yet). */
  get appliedVersion(): number {
    return this.applied;
  }

  async start(): Promise<void> {
    this.watching = await this.options.versions.watch((v) => {
      if (!this.newest || v.version > this.newest.version) {
        this.newest = v;
        this.wake();
      }
    });
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.watching?.stop();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const target = this.newest;
      try {
        if (target && (await this.worthTrying(target))) {
          const outcome = await this.options.exclusive(() => this.apply(target));
          this.last = { version: target.version, outcome };
          if (outcome === 'superseded') continue;
        }
      } catch (error) {
        this.options.logger.error(
          { msgId: LogIds.meshVersionFailed, version: target?.version, err: error },
          'mesh configuration version not applied; trying again',
        );
      }
      await this.pause();
    }
  }

  /**
   * Whether `target` is still to be worked on: not applied yet, and not failed or
   * skipped for good (an operator's `rollout resume` sets a failed host waiting again).
   */
  private async worthTrying(target: MeshVersion): Promise<boolean> {
    if (target.version <= this.applied) return false;
    const { last } = this;
    if (last?.version !== target.version) return true;
    if (last.outcome !== 'failed' && last.outcome !== 'skipped') return true;
    const entry = await this.options.board.entry(target.version);
    return entry?.host.state === HostState.WAITING;
  }

  private pause(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.options.pollMs ?? 500);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private superseded(target: MeshVersion): boolean {
    return this.stopped || (this.newest?.version ?? 0) > target.version;
  }

  private async apply(target: MeshVersion): Promise<Outcome> {
    const { board, supervisor, hostId, logger } = this.options;
    const { version } = target;
    const fail = async (reason: string): Promise<Outcome> => {
      logger.error({ msgId: LogIds.meshVersionFailed, version, reason }, reason);
      await board.report(version, 'FAILED', reason);
      return 'failed';
    };
    const still = this.applied ? `; it still runs version ${this.applied}` : '';
    let mesh: MeshSpec;
    try {
      mesh = this.options.parse(target.content, `mesh configuration version ${version}`);
    } catch (error) {
      return fail(`${(error as Error).message}${still}`);
    }
    const configs = forHost(mesh, hostId);
    const missing = await missingFiles(configs);
    if (missing.length > 0) {
      return fail(`missing on host ${hostId}: ${missing.join('; ')}${still}`);
    }
    await this.options.prepare(configs);
    const plan = supervisor.plan(configs);
    // Forced: the kept instances of every component roll, changed or not.
    const forced = target.restartUnchanged ? [...plan.scaled, ...plan.unchanged] : [];
    const kept = new Map(forced.map((name) => [name, supervisor.instances(name)]));
    if (plan.changed.length === 0 && forced.length === 0) {
      await supervisor.applyAtOnce(configs, plan, version);
      return this.done(target, 'applied at once');
    }
    const turn = await board.takeTurn(version);
    if (!turn.go) {
      logger.info(
        { msgId: turn.why === 'aborted' ? LogIds.rolloutSkipped : LogIds.rolloutWaiting, version },
        `version ${version}: ${turn.detail}`,
      );
      return turn.why === 'aborted' ? 'skipped' : 'waiting';
    }
    await supervisor.applyAtOnce(configs, plan, version);
    const steps = [...configs.keys()].flatMap((name) => {
      const config = configs.get(name)!;
      const instances = plan.changed.includes(name)
        ? supervisor.outdated(name, config)
        : (kept.get(name) ?? []).filter((i) => supervisor.instances(name).includes(i));
      return instances.map((instance) => ({ instance, config }));
    });
    const limits = {
      timeoutMs: mesh.rollout.stepTimeoutSeconds * 1000,
      healthyMs: mesh.rollout.healthySeconds * 1000,
    };
    for (const [done, { instance, config }] of steps.entries()) {
      const label = `${instance.component}#${instance.number}`;
      const replaced =
        done > 0 ? `; the ${done} instance(s) replaced before keep running version ${version}` : '';
      if (this.superseded(target)) {
        await board.report(version, 'SKIPPED', `superseded after ${done} of ${steps.length} steps`);
        return 'superseded';
      }
      if (await board.aborted(version)) {
        return fail(
          `rollout aborted before ${label} (${done} of ${steps.length} steps)${replaced}`,
        );
      }
      const step = `${label} (${done + 1}/${steps.length})`;
      logger.info({ msgId: LogIds.rolloutStep, version, step }, `version ${version}: ${step}`);
      await board.report(version, 'ROLLING', step);
      const failure = await supervisor.replace(instance, config, limits, version);
      if (failure) {
        const back = this.applied ? `version ${this.applied}` : 'its previous config';
        return fail(`${failure}: ${label} runs ${back} again${replaced}`);
      }
    }
    return this.done(target, `${steps.length} instance(s) replaced`);
  }

  private async done(target: MeshVersion, how: string): Promise<Outcome> {
    const { version } = target;
    this.applied = version;
    await this.options.board.report(version, 'APPLIED', how);
    this.options.logger.info(
      { msgId: LogIds.meshVersionApplied, version },
      `mesh configuration version ${version} applied (${how})`,
    );
    return 'applied';
  }
}

/**
 * What this host lacks to run `configs`: a command not found (a path, or a name on
 * PATH), a working directory, a file named by an env var ending in `_FILE`. Each is
 * named by its field path.
 */
export async function missingFiles(configs: Map<string, ComponentConfig>): Promise<string[]> {
  const problems: string[] = [];
  for (const [name, config] of configs) {
    const cwd = config.cwd ? resolve(config.cwd) : process.cwd();
    const at = (field: string) => `components.${name}.${field}`;
    if (config.cwd && !(await isDirectory(cwd))) {
      problems.push(`${at('cwd')}: no directory ${cwd}`);
      continue;
    }
    if (!(await findCommand(config.command, cwd, config.env.PATH ?? process.env.PATH ?? ''))) {
      problems.push(`${at('command')}: ${config.command} not found`);
    }
    for (const [key, value] of Object.entries(config.env)) {
      if (!key.endsWith('_FILE') || value === '') continue;
      const file = isAbsolute(value) ? value : join(cwd, value);
      if (!(await readable(file))) problems.push(`${at(`env.${key}`)}: no readable file ${file}`);
    }
  }
  return problems;
}

async function findCommand(command: string, cwd: string, path: string): Promise<boolean> {
  if (command.includes('/')) return executable(resolve(cwd, command));
  for (const dir of path.split(delimiter).filter(Boolean)) {
    if (await executable(join(dir, command))) return true;
  }
  return false;
}

const executable = (file: string) =>
  access(file, constants.X_OK).then(
    () => true,
    () => false,
  );
const readable = (file: string) =>
  access(file, constants.R_OK).then(
    () => true,
    () => false,
  );
const isDirectory = (dir: string) =>
  stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
