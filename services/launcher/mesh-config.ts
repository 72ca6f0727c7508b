/**
 * The mesh configuration: the part of the launcher's config that every host shares
 * (components, where they run, how they roll out), published on the bus as versions
 * (bus/mesh-config.ts). Parsing refuses what must not be shared:
 *
 * - a host's own settings (hostId, address, bus, grpcListen, control, adminPort), which
 *   stay in that host's file, flags or environment;
 * - secret values: every launcher and operator reads the configuration, so it names
 *   files on the hosts instead. An env variable whose name says it holds a secret
 *   (…_SECRET, …_PASSWORD, …_TOKEN, …_API_KEY, …_PRIVATE_KEY, …_CREDENTIALS) must end in
 *   `_FILE` and hold a path, and no env value may be a PEM private key.
 *
 * A component's `settings:` (a gateway's, discovery's or cache's own config) is checked
 * by that component's schema, secret values refused alike: see component-settings.ts.
 *
 * Every problem names the field's path and its line in the file.
 */
import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import { id } from '../../bus/index.js';
import { ConfigError, parseYamlText, type YamlText } from '../common/config.js';
import { checkDependencies, component, rollout } from './config.js';

/** Settings of one host's launcher: never part of the shared configuration. */
const HOST_SETTINGS = ['hostId', 'address', 'bus', 'grpcListen', 'control', 'adminPort'] as const;

const meshConfigSchema = z
  .strictObject({
    /** What a restarted launcher does with the children still running; absent: the host's own setting. */
    recovery: z.enum(['stop', 'adopt']).optional(),
    rollout,
    components: z.record(id, component).default({}),
  })
  .superRefine(checkDependencies, { when: () => true });

export type MeshConfig = z.infer<typeof meshConfigSchema>;

/** Names that say a variable holds a secret; `…_FILE` variants name a file instead. */
const SECRET_NAME = /(SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?)$/i;
const PRIVATE_KEY_PEM = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/** Refusals of secret values in a component's env, as [path, message]. */
function secretProblems(value: unknown): Array<[Array<string | number>, string]> {
  const components = (value as { components?: unknown } | null)?.components;
  if (typeof components !== 'object' || components === null) return [];
  const problems: Array<[Array<string | number>, string]> = [];
  for (const [name, c] of Object.entries(components)) {
    const env = (c as { env?: unknown } | null)?.env;
    if (typeof env !== 'object' || env === null) continue;
    for (const [variable, text] of Object.entries(env)) {
      const path = ['components', name, 'env', variable];
      if (typeof text !== 'string' || text === '') continue;
      if (SECRET_NAME.test(variable)) {
        problems.push([
          path,
          `looks like a secret value: the mesh configuration is read by every host and operator; put the secret in a file on the hosts and name that file in ${variable}_FILE`,
        ]);
      } else if (PRIVATE_KEY_PEM.test(text)) {
        problems.push([
          path,
          'holds a private key: put it in a file on the hosts and name the file',
        ]);
      }
    }
  }
  return problems;
}

/**
 * Validates a whole mesh configuration; `source` names it in errors (a file name).
 * Throws a ConfigError listing every problem as `path (source:line): what is wrong`.
 */
export function parseMeshConfig(text: string, source: string): MeshConfig {
  const yaml = parseYamlText(text, source);
  const problems: string[] = [];
  const report = (path: readonly PropertyKey[], message: string) =>
    problems.push(`${describe(path)} (${where(yaml, source, path)}): ${message}`);
  let value = yaml.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    report([], 'must be a mapping with `components:`');
    throw new ConfigError(source, problems);
  }
  const shared: Record<string, unknown> = { ...value };
  for (const setting of HOST_SETTINGS) {
    if (!(setting in shared)) continue;
    delete shared[setting];
    report(
      [setting],
      "a setting of one host: set it on the host (its launcher's file, flags or environment), not in the mesh configuration",
    );
  }
  value = shared;
  for (const [path, message] of secretProblems(value)) report(path, message);
  const result = meshConfigSchema.safeParse(value);
  if (!result.success) {
    for (const issue of result.error.issues) {
      // An unknown key is best found at the key itself.
      const at = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]!] : issue.path;
      problems.push(`${describe(issue.path)} (${where(yaml, source, at)}): ${issue.message}`);
    }
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(source, problems);
  return result.data;
}

/**
 * The text without the host settings at its top level, every other line kept as written:
 * how a launcher's file that also describes the mesh (deploy/local/mesh.yaml) becomes
 * a mesh configuration to publish.
 */
export function withoutHostSettings(text: string): string {
  const yaml = parseYamlText(text, '(mesh configuration)');
  const lines = text.split('\n');
  const drop = new Set<number>();
  for (const setting of HOST_SETTINGS) {
    const span = yaml.linesOf([setting]);
    if (!span) continue;
    for (let line = span.first; line <= span.last; line++) drop.add(line);
  }
  return lines.filter((_, i) => !drop.has(i + 1)).join('\n');
}

const describe = (path: readonly PropertyKey[]) =>
  path.length ? path.map(String).join('.') : '(top level)';

function where(yaml: YamlText, source: string, path: readonly PropertyKey[]): string {
  return `${source}:${yaml.lineOf(path)}`;
}

/** Longest summary kept with a version (the rest is in `config diff`). */
const SUMMARY_MAX = 1000;

/**
 * One line saying what `next` changes in `previous` (undefined: there was none), for
 * the history: components added and removed, and of each changed component its
 * instances, version, hosts, and which of command, args, env (by variable), the
 * component's own settings and its other fields changed.
 */
export function describeChange(previous: MeshConfig | undefined, next: MeshConfig): string {
  const names = Object.keys(next.components);
  if (!previous) {
    return clip(
      `first version: ${count(names.length, 'component')} (${names.join(', ') || 'none'})`,
    );
  }
  const parts: string[] = [];
  const before = previous.components;
  for (const name of Object.keys(before))
    if (!(name in next.components)) parts.push(`${name}: removed`);
  for (const name of names) {
    const [was, now] = [before[name], next.components[name]!];
    if (!was) {
      parts.push(`${name}: added (${count(now.instances, 'instance')})`);
      continue;
    }
    const changes = componentChanges(was, now);
    if (changes.length > 0) parts.push(`${name}: ${changes.join(', ')}`);
  }
  if (previous.recovery !== next.recovery) {
    parts.push(
      `recovery ${previous.recovery ?? '(host default)'} → ${next.recovery ?? '(host default)'}`,
    );
  }
  if (!isDeepStrictEqual(previous.rollout, next.rollout)) {
    parts.push(
      `rollout ${previous.rollout.healthySeconds}s/${previous.rollout.stepTimeoutSeconds}s → ${next.rollout.healthySeconds}s/${next.rollout.stepTimeoutSeconds}s (healthy/step timeout)`,
    );
  }
  return clip(
    parts.length > 0 ? parts.join('; ') : 'no change to what runs (comments or layout only)',
  );
}

type Component = MeshConfig['components'][string];

function componentChanges(was: Component, now: Component): string[] {
  const changes: string[] = [];
  const shown = (hosts: readonly string[] | undefined) => (hosts ? hosts.join(',') : 'every host');
  if (was.version !== now.version) {
    changes.push(`version ${was.version ?? '(none)'} → ${now.version ?? '(none)'}`);
  }
  if (was.instances !== now.instances)
    changes.push(`instances ${was.instances} → ${now.instances}`);
  if (!isDeepStrictEqual(was.hosts, now.hosts)) {
    changes.push(`hosts ${shown(was.hosts)} → ${shown(now.hosts)}`);
  }
  if (was.command !== now.command) changes.push('command changed');
  if (!isDeepStrictEqual(was.args, now.args)) changes.push('args changed');
  const env = [...new Set([...Object.keys(was.env), ...Object.keys(now.env)])].filter(
    (variable) => was.env[variable] !== now.env[variable],
  );
  if (env.length > 0) changes.push(`env ${env.join(',')} changed`);
  // Instances read their settings file when they start: a new one takes a restart.
  if (!isDeepStrictEqual(was.settings, now.settings)) {
    changes.push(
      now.settings ? 'settings changed (restart needed)' : 'settings removed (restart needed)',
    );
  }
  const described = new Set([
    'version',
    'instances',
    'hosts',
    'command',
    'args',
    'env',
    'settings',
  ]);
  const others = Object.keys({ ...was, ...now }).filter(
    (field) =>
      !described.has(field) &&
      !isDeepStrictEqual(was[field as keyof Component], now[field as keyof Component]),
  );
  if (others.length > 0) changes.push(`${others.join(', ')} changed`);
  return changes;
}

const count = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;

const clip = (text: string) =>
  text.length <= SUMMARY_MAX ? text : `${text.slice(0, SUMMARY_MAX - 1)}…`;
