/**
 * The components of one host and their instances: start in dependency order, stop in
 * reverse, rolling restart one instance at a time, and refresh by applying only the
 * difference between the running set and a new config.
 */
import { ControlError } from '../../bus/index.js';
import type { ComponentConfig } from './config.js';
import { freePort, Instance, type InstanceContext, State } from './instance.js';
import { LogIds } from './log-ids.js';
import type { Child } from './process.js';
import { type StartedSpec, specDigest } from './spec.js';

interface Component {
  config: ComponentConfig;
  /** The configuration version `config` comes from (0: the file). */
  configVersion: number;
  readonly instances: Instance[];
}

/** A process a previous launcher run left alive, to be adopted by its instance. */
export interface Adoptable {
  readonly component: string;
  readonly instance: number;
  readonly port: number;
  readonly child: Child;
  /** What it was started as, as recorded. */
  readonly started: StartedSpec;
  /**
   * The config it was started with, when that is not what the configuration runs now
   * and is known: its instance keeps it until a rollout replaces it (and goes back to it
   * if that fails).
   */
  readonly startedWith?: { readonly config: ComponentConfig; readonly version: number };
}

export interface RefreshPlan {
  readonly added: string[];
  readonly removed: string[];
  readonly scaled: string[];
  readonly changed: string[];
  readonly unchanged: string[];
}

/** How long a rollout step may take and how long its new instance must then stay ready. */
export interface StepLimits {
  readonly timeoutMs: number;
  readonly healthyMs: number;
}

export class Supervisor {
  /** In start order: dependencies first. */
  private readonly components = new Map<string, Component>();

  constructor(private readonly ctx: InstanceContext) {}

  names(): string[] {
    return [...this.components.keys()];
  }

  status() {
    return [...this.components.values()].flatMap((c) => c.instances.map((i) => i.status()));
  }

  /**
   * Starts every component in order, waiting for a component's dependencies to be
   * ready; `configVersion` is the configuration version `configs` come from (0: the file).
   */
  async startAll(
    configs: Map<string, ComponentConfig>,
    adoptable: Adoptable[] = [],
    configVersion = 0,
  ): Promise<void> {
    for (const [name, config] of configs) await this.add(name, config, configVersion, adoptable);
  }

  async stopAll(reason: string): Promise<void> {
    for (const name of [...this.components.keys()].reverse()) await this.remove(name, reason);
  }

  start(name: string, instance: number): string {
    const targets = this.select(name, instance);
    for (const i of targets) i.start();
    return `started ${targets.length} instance(s) of ${name}`;
  }

  async stop(name: string, instance: number): Promise<string> {
    const targets = this.select(name, instance);
    await Promise.all(targets.map((i) => i.stop('requested')));
    return `stopped ${targets.length} instance(s) of ${name}`;
  }

  /**
   * Rolling restart: one instance at a time — marked DRAINING in discovery (when it is
   * registered there), given its drain time, stopped, started — the next only after the
   * new process is ready. Aborts (and says so) when one does not become ready in time.
   */
  async restart(name: string, instance: number): Promise<string> {
    const targets = this.select(name, instance);
    const { logger } = this.ctx;
    for (const target of targets) {
      const { readyTimeoutSeconds } = target.config;
      logger.info(
        { msgId: LogIds.rollingRestart, component: name, instance: target.number },
        `rolling restart of ${name}#${target.number}`,
      );
      await this.takeOut(target, 'rolling restart');
      target.start();
      if (!(await target.waitReady(readyTimeoutSeconds * 1000))) {
        const detail = `${name}#${target.number} did not become ready within ${readyTimeoutSeconds} s (state ${target.state}): rolling restart aborted`;
        logger.error(
          { msgId: LogIds.rollingAborted, component: name, instance: target.number },
          detail,
        );
        throw new ControlError('ABORTED', detail);
      }
    }
    return `restarted ${targets.length} instance(s) of ${name}`;
  }

  /** Compares the running set with `configs` (this host's components, in start order). */
  plan(configs: Map<string, ComponentConfig>): RefreshPlan {
    const plan: RefreshPlan = { added: [], removed: [], scaled: [], changed: [], unchanged: [] };
    for (const name of this.components.keys()) if (!configs.has(name)) plan.removed.push(name);
    for (const [name, config] of configs) {
      const running = this.components.get(name);
      if (!running) plan.added.push(name);
      else if (this.outdated(name, config).length > 0) plan.changed.push(name);
      else if (running.config.instances !== config.instances) plan.scaled.push(name);
      else plan.unchanged.push(name);
    }
    return plan;
  }

  /** Applies a plan: removed ones stop, new ones start, counts scale, changed ones roll. */
  async apply(configs: Map<string, ComponentConfig>, plan: RefreshPlan): Promise<void> {
    for (const name of [...plan.removed].reverse()) await this.remove(name, 'removed from config');
    for (const [name, config] of configs) {
      const running = this.components.get(name);
      if (plan.added.includes(name)) await this.add(name, config, 0);
      else if (running && (plan.scaled.includes(name) || plan.changed.includes(name))) {
        const previous = running.config;
        running.config = config;
        running.configVersion = 0;
        await this.scale(name, running, config.instances);
        if (plan.changed.includes(name)) {
          for (const i of running.instances) i.setConfig(config, 0);
          const kept = Math.min(previous.instances, config.instances);
          if (kept > 0) {
            for (let n = 1; n <= kept; n++) await this.restart(name, n);
          }
        }
      }
    }
    this.reorder(configs);
  }

  /** The instances of `name` (none when it does not run here). */
  instances(name: string): Instance[] {
    return [...(this.components.get(name)?.instances ?? [])];
  }

  /**
   * The running instances of `name` whose process differs from what `config` runs
   * (after a halted rollout, some instances of a component may run one version and
   * some another; an adopted child runs what it was started with).
   */
  outdated(name: string, config: ComponentConfig): Instance[] {
    const running = this.components.get(name);
    if (!running) return [];
    const digest = specDigest(config);
    const stale = specDigest(running.config) !== digest;
    return running.instances.filter(
      (i) => stale || specDigest(i.config) !== digest || i.started.specDigest !== digest,
    );
  }

  /**
   * Applies a plan except the replacement of changed instances, which a rollout does
   * one step at a time (`replace`): removed components stop, new ones start, counts
   * scale; a changed component's new instances start with its new config at once.
   */
  async applyAtOnce(
    configs: Map<string, ComponentConfig>,
    plan: RefreshPlan,
    configVersion: number,
  ): Promise<void> {
    for (const name of [...plan.removed].reverse()) await this.remove(name, 'removed from config');
    for (const [name, config] of configs) {
      const running = this.components.get(name);
      if (plan.added.includes(name)) await this.add(name, config, configVersion);
      else if (running && (plan.scaled.includes(name) || plan.changed.includes(name))) {
        running.config = config;
        running.configVersion = configVersion;
        await this.scale(name, running, config.instances);
      }
    }
    this.reorder(configs);
  }

  /**
   * One rollout step: the instance is taken out (DRAINING in discovery when registered
   * there, then its drain time), stopped and started with `config`. It succeeds once the
   * new process is ready (registered UP, for `readiness: registered`) within
   * `limits.timeoutMs` and then stays ready for `limits.healthyMs`. Otherwise the
   * instance is started again with the config it ran before, and the reason is returned.
   */
  async replace(
    instance: Instance,
    config: ComponentConfig,
    limits: StepLimits,
    configVersion: number,
  ): Promise<string | undefined> {
    const previous = { config: instance.config, version: instance.configVersion };
    const label = `${instance.component}#${instance.number}`;
    await this.takeOut(instance, 'rollout');
    instance.setConfig(config, configVersion);
    instance.start();
    let failure: string | undefined;
    if (!(await instance.waitReady(limits.timeoutMs))) {
      const starting = instance.state === 'STARTING' || instance.state === 'RUNNING';
      failure = starting
        ? `${label} did not become ready within ${limits.timeoutMs / 1000} s`
        : `${label} ended before it was ready`;
    } else if (!(await instance.staysReady(limits.healthyMs))) {
      failure = `${label} did not stay ready for ${limits.healthyMs / 1000} s`;
    }
    if (!failure) return undefined;
    const { state, lastExit } = instance.status();
    failure += ` (state ${State[state] ?? state}${lastExit ? `, last exit ${lastExit}` : ''})`;
    this.ctx.logger.error(
      { msgId: LogIds.rolloutStepFailed, component: instance.component, instance: instance.number },
      `${failure}: back to its previous config`,
    );
    await instance.stop('rollout step failed');
    instance.setConfig(previous.config, previous.version);
    const component = this.components.get(instance.component);
    if (component) {
      component.config = previous.config;
      component.configVersion = previous.version;
    }
    instance.start();
    await instance.waitReady(previous.config.readyTimeoutSeconds * 1000);
    return failure;
  }

  private async takeOut(target: Instance, why: string): Promise<void> {
    const { readiness, drainSeconds } = target.config;
    if (readiness && 'registered' in readiness) {
      await this.ctx.registry.markDraining(readiness.registered.serviceId, target.port);
    }
    await target.stop(why, drainSeconds * 1000);
  }

  private reorder(configs: Map<string, ComponentConfig>): void {
    // Keep the map in the new start order.
    const order = [...configs.keys()].filter((n) => this.components.has(n));
    const entries = order.map((n) => [n, this.components.get(n)!] as const);
    this.components.clear();
    for (const [n, c] of entries) this.components.set(n, c);
  }

  private select(name: string, instance: number): Instance[] {
    const component = this.components.get(name);
    if (!component) throw new ControlError('NOT_FOUND', `no component "${name}" on this host`);
    if (instance === 0) return component.instances;
    const one = component.instances[instance - 1];
    if (!one) {
      throw new ControlError(
        'NOT_FOUND',
        `${name} has ${component.instances.length} instance(s); no instance ${instance}`,
      );
    }
    return [one];
  }

  private async add(
    name: string,
    config: ComponentConfig,
    configVersion: number,
    adoptable: Adoptable[] = [],
  ): Promise<void> {
    await this.waitForDependencies(config);
    const component: Component = { config, configVersion, instances: [] };
    this.components.set(name, component);
    await this.scale(name, component, config.instances, adoptable);
  }

  private async remove(name: string, reason: string): Promise<void> {
    const component = this.components.get(name);
    if (!component) return;
    await Promise.all(component.instances.map((i) => i.stop(reason)));
    this.components.delete(name);
  }

  private async scale(
    name: string,
    component: Component,
    count: number,
    adoptable: Adoptable[] = [],
  ) {
    const { config, configVersion, instances } = component;
    while (instances.length > count) await instances.pop()?.stop('scaled down');
    while (instances.length < count) {
      const number = instances.length + 1;
      const adopted = adoptable.find((a) => a.component === name && a.instance === number);
      const port =
        adopted?.port ??
        (config.port?.base
          ? config.port.base + number - 1
          : config.port
            ? await freePort(this.ctx.address)
            : 0);
      const startedWith = adopted?.startedWith ?? { config, version: configVersion };
      const instance = new Instance(
        name,
        number,
        startedWith.config,
        startedWith.version,
        port,
        this.ctx,
      );
      instances.push(instance);
      if (adopted) instance.adopt(adopted.child, adopted.started);
      else instance.start();
    }
  }

  private async waitForDependencies(config: ComponentConfig): Promise<void> {
    for (const dep of config.dependsOn) {
      const running = this.components.get(dep);
      if (!running) continue;
      await Promise.all(
        running.instances.map((i) => i.waitReady(running.config.readyTimeoutSeconds * 1000)),
      );
    }
  }
}
