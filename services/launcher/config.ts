/**
 * The launcher's YAML config: which components run on which hosts, how each is
 * started, probed, restarted and stopped. One shared file may describe a whole
 * cluster; `forHost` keeps what one host runs.
 */
import { z } from 'zod';
import { id } from '../../bus/index.js';
import { loadYamlConfig } from '../common/config.js';

const seconds = z.number().nonnegative();
const signal = z.enum(['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGKILL']);

/** How the launcher knows an instance can take traffic. `${PORT}` is its assigned port. */
const readiness = z.union([
  z.object({ http: z.string().min(1) }).strict(),
  z
    .object({ grpc: z.object({ address: z.string().optional(), service: z.string().default('') }) })
    .strict(),
  /** The instance is UP in discovery's registry, under this service id, on its port. */
  z.object({ registered: z.object({ serviceId: id }).strict() }).strict(),
]);

const component = z
  .object({
    command: z.string().min(1),
    args: z.array(z.string()).default([]),
    cwd: z.string().optional(),
    env: z.record(z.string(), z.string()).default({}),
    instances: z.number().int().min(0).max(256).default(1),
    /** Env var that carries the instance number (1-based). */
    instanceEnv: z.string().default('HALYARD_INSTANCE'),
    /** Each instance gets a port in `env`: a free one, or `base + instance - 1`. */
    port: z
      .object({
        env: z.string().default('PORT'),
        base: z.number().int().min(1).max(65535).optional(),
      })
      .strict()
      .optional(),
    readiness: readiness.optional(),
    readyTimeoutSeconds: seconds.default(30),
    restart: z
      .object({
        intervals: z.array(seconds).min(1).default([1, 1, 1, 5, 5, 10, 20, 60, 120, 240]),
        minUptimeSeconds: seconds.default(90),
      })
      .strict()
      .default({ intervals: [1, 1, 1, 5, 5, 10, 20, 60, 120, 240], minUptimeSeconds: 90 }),
    stop: z
      .object({ signal: signal.default('SIGTERM'), timeoutSeconds: seconds.default(20) })
      .strict()
      .default({ signal: 'SIGTERM', timeoutSeconds: 20 }),
    /** Rolling restart: time between taking an instance out and stopping it. */
    drainSeconds: seconds.default(0),
    dependsOn: z.array(id).default([]),
    /** Hosts that run it; absent: every host. */
    hosts: z.array(id).optional(),
  })
  .strict();

export const launcherConfig = z
  .object({
    hostId: id.optional(),
    /** What to do with children a killed launcher left running. */
    recovery: z.enum(['stop', 'adopt']).default('stop'),
    components: z.record(id, component).default({}),
  })
  .strict()
  // Runs even when fields are invalid, so that one pass reports every problem; the
  // value may then be the raw input, hence the defensive reading.
  .superRefine(
    (config, ctx) => {
      const components = dependencies(config);
      for (const [name, deps] of Object.entries(components)) {
        deps.forEach((dep, i) => {
          if (!(dep in components)) {
            ctx.addIssue({
              code: 'custom',
              path: ['components', name, 'dependsOn', i],
              message: `no component "${dep}"`,
            });
          }
        });
      }
      const cycle = findCycle(components);
      if (cycle) {
        ctx.addIssue({
          code: 'custom',
          path: ['components', cycle[0]!, 'dependsOn'],
          message: `dependency cycle: ${cycle.join(' → ')}`,
        });
      }
    },
    { when: () => true },
  );

/** Each component's `dependsOn`, from a value that may not have passed validation. */
function dependencies(config: unknown): Record<string, string[]> {
  const components = (config as { components?: unknown } | null)?.components;
  if (typeof components !== 'object' || components === null) return {};
  return Object.fromEntries(
    Object.entries(components).map(([name, c]) => {
      const deps = (c as { dependsOn?: unknown } | null)?.dependsOn;
      return [name, Array.isArray(deps) ? deps.filter((d) => typeof d === 'string') : []];
    }),
  );
}

export type LauncherConfig = z.infer<typeof launcherConfig>;
export type ComponentConfig = z.infer<typeof component>;
export type Readiness = z.infer<typeof readiness>;

function findCycle(components: Record<string, string[]>): string[] | undefined {
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: string[]): string[] | undefined => {
    if (state.get(name) === 'visiting') return [...path.slice(path.indexOf(name)), name];
    if (state.get(name) === 'done' || !components[name]) return undefined;
    state.set(name, 'visiting');
    for (const dep of components[name]) {
      const cycle = visit(dep, [...path, name]);
      if (cycle) return cycle;
    }
    state.set(name, 'done');
    return undefined;
  };
  for (const name of Object.keys(components)) {
    const cycle = visit(name, []);
    if (cycle) return cycle;
  }
  return undefined;
}

/** Loads and validates the file; throws ConfigError listing every problem. */
export function loadLauncherConfig(file: string): Promise<LauncherConfig> {
  return loadYamlConfig(launcherConfig, file);
}

/** The components `hostId` runs, dependencies first (a dependency on another host's component is ignored). */
export function forHost(config: LauncherConfig, hostId: string): Map<string, ComponentConfig> {
  const mine = new Map<string, ComponentConfig>();
  const add = (name: string) => {
    const c = config.components[name];
    if (!c || mine.has(name) || (c.hosts && !c.hosts.includes(hostId))) return;
    for (const dep of c.dependsOn) add(dep);
    mine.set(name, c);
  };
  for (const name of Object.keys(config.components)) add(name);
  return mine;
}
