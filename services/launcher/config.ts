/**
 * The launcher's YAML config: which components run on which hosts, how each is
 * started, probed, restarted and stopped. One shared file may describe a whole
 * cluster; `forHost` keeps what one host runs. The launcher's own settings (host id,
 * bus, control and admin addresses) may be in the file too, overridden by the
 * environment and flags (see services/common/component-config.ts).
 */
import { z } from 'zod';
import { id } from '../../bus/index.js';
import { busFlags, busSettings } from '../common/bus-settings.js';
import { tokenList } from '../common/callers.js';
import {
  type ComponentSpec,
  loadComponentConfig,
  type Setting,
} from '../common/component-config.js';
import { ConfigError, loadYamlConfig } from '../common/config.js';
import { serverTlsSettings } from '../common/server-tls.js';
import { componentSettings } from './component-settings.js';

const seconds = z.number().nonnegative();
const signal = z.enum(['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGKILL']);

/** How the launcher knows an instance can take traffic. `${PORT}` is its assigned port. */
const readiness = z.union([
  z.strictObject({ http: z.string().min(1) }),
  z.strictObject({
    grpc: z.strictObject({ address: z.string().optional(), service: z.string().default('') }),
  }),
  /** The instance is UP in discovery's registry, under this service id, on its port. */
  z.strictObject({ registered: z.strictObject({ serviceId: id }) }),
]);

export const component = z.strictObject({
  command: z.string().min(1),
  /**
   * The pinned version of what the component runs (free text, e.g. `1.4.2`): changing it
   * is a change of the component, rolled out like a new command.
   */
  version: z.string().min(1).max(128).optional(),
  args: z.array(z.string()).default([]),
  cwd: z.string().optional(),
  env: z.record(z.string(), z.string()).default({}),
  instances: z.number().int().min(0).max(256).default(1),
  /** Env var that carries the instance number (1-based). */
  instanceEnv: z.string().default('HALYARD_INSTANCE'),
  /** Each instance gets a port in `env`: a free one, or `base + instance - 1`. */
  port: z
    .strictObject({
      env: z.string().default('PORT'),
      base: z.number().int().min(1).max(65535).optional(),
    })
    .optional(),
  readiness: readiness.optional(),
  readyTimeoutSeconds: seconds.default(30),
  restart: z
    .strictObject({
      intervals: z.array(seconds).min(1).default([1, 1, 1, 5, 5, 10, 20, 60, 120, 240]),
      minUptimeSeconds: seconds.default(90),
    })
    .default({ intervals: [1, 1, 1, 5, 5, 10, 20, 60, 120, 240], minUptimeSeconds: 90 }),
  stop: z
    .strictObject({ signal: signal.default('SIGTERM'), timeoutSeconds: seconds.default(20) })
    .default({ signal: 'SIGTERM', timeoutSeconds: 20 }),
  /** Rolling restart: time between taking an instance out and stopping it. */
  drainSeconds: seconds.default(0),
  dependsOn: z.array(id).default([]),
  /** Hosts that run it; absent: every host. */
  hosts: z.array(id).optional(),
  /** A gateway's, discovery's or cache's own config, handed to each instance as a file. */
  settings: componentSettings.optional(),
});

/**
 * Who may call the gRPC `Launcher` API (see services/common/callers.ts): callers prove an
 * identity with a client certificate verified against `tls.clientCaFile` (identity = its
 * subject CN) or a service token whose SHA-256 is listed; `grants` says what each
 * identity may do: `read` (Display) or `control` (Start, Stop, Restart, Refresh, and
 * Display). Nobody is granted anything by default.
 */
const controlAccess = z.strictObject({
  tls: serverTlsSettings.optional(),
  tokens: tokenList('identity', z.string().min(1)),
  grants: z.record(z.string().min(1), z.enum(['read', 'control'])).default({}),
});

/**
 * How a changed component rolls out, one instance at a time: a new instance must stay
 * ready, registered and healthy for `healthySeconds` before the next step, and a step
 * that takes longer than `stepTimeoutSeconds` has failed.
 */
export const rollout = z
  .strictObject({
    healthySeconds: seconds.default(5),
    stepTimeoutSeconds: z.number().positive().default(120),
  })
  .default({ healthySeconds: 5, stepTimeoutSeconds: 120 });

export const launcherConfig = z
  .strictObject({
    hostId: id.optional(),
    /**
     * This host's address on the network between hosts: children listen on it (given
     * as HALYARD_HOST_ADDRESS), and free ports and readiness probes use it.
     */
    address: z.ipv4().or(z.ipv6()).default('127.0.0.1'),
    bus: busSettings,
    /** gRPC control address; port 0 picks a free one. */
    grpcListen: z
      .string()
      .regex(/^.+:\d{1,5}$/, 'must be host:port')
      .default('127.0.0.1:7400'),
    /** Who may call the gRPC control API, and what for. */
    control: controlAccess.default({ tokens: [], grants: {} }),
    /** Admin HTTP port (/healthz /readyz /metrics); 0 picks a free one. */
    adminPort: z.number().int().min(0).max(65_535).default(7401),
    /** What to do with children a killed launcher left running. */
    recovery: z.enum(['stop', 'adopt']).default('stop'),
    /**
     * Where the components come from: this file (`refresh` re-reads it), or the mesh
     * configuration versions on the bus, applied as they are published (the file then
     * gives only this host's settings).
     */
    meshConfig: z.enum(['file', 'bus']).default('file'),
    rollout,
    components: z.record(id, component).default({}),
  })
  .superRefine(checkDependencies, { when: () => true });

/**
 * Every `dependsOn` names a component and there is no cycle. Runs even when fields are
 * invalid, so that one pass reports every problem; the value may then be the raw input,
 * hence the defensive reading.
 */
export function checkDependencies(config: unknown, ctx: z.RefinementCtx): void {
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
}

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
export type ControlAccess = z.infer<typeof controlAccess>;

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

const settings: readonly Setting[] = [
  ...busFlags,
  {
    flag: '--host-id <id>',
    path: 'hostId',
    description: 'this host (overrides hostId in the file)',
  },
  {
    flag: '--address <ip>',
    env: 'HALYARD_HOST_ADDRESS',
    path: 'address',
    description: "this host's address, where its components listen",
  },
  { flag: '--grpc <host:port>', path: 'grpcListen', description: 'gRPC control address' },
  {
    flag: '--mesh-config <file|bus>',
    env: 'HALYARD_MESH_CONFIG',
    path: 'meshConfig',
    description: 'components from the config file, or from the mesh configuration on the bus',
  },
  {
    flag: '--admin-port <port>',
    path: 'adminPort',
    description: 'admin HTTP port (/healthz /readyz /metrics)',
    parse: Number,
  },
];

const spec: ComponentSpec<typeof launcherConfig> = {
  name: 'halyard-launcher',
  description: 'Halyard launcher: starts, watches and restarts the components of one host',
  schema: launcherConfig,
  configEnv: 'HALYARD_LAUNCHER_CONFIG',
  fileRequired: true,
  settings,
};

/**
 * The launcher's config from its file (`--config`, required), the environment and
 * `argv`; returns the file too, which a refresh reads again.
 */
export async function loadLauncherSettings(
  argv: readonly string[],
): Promise<{ config: LauncherConfig; file: string }> {
  const { config, file } = await loadComponentConfig(spec, argv);
  if (!file) throw new ConfigError('(flags and environment)', ['--config: required']);
  return { config, file };
}

/** The components `hostId` runs, dependencies first (a dependency on another host's component is ignored). */
export function forHost(
  config: Pick<LauncherConfig, 'components'>,
  hostId: string,
): Map<string, ComponentConfig> {
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
