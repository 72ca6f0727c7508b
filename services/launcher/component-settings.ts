/**
 * The settings of Halyard's own components (gateway, discovery, cache) carried in the
 * launcher's config, so that the mesh configuration on the bus holds them too:
 *
 * ```yaml
 * components:
 *   gateway:
 *     command: …
 *     settings:
 *       kind: gateway          # whose schema checks the rest
 *       limits: { maxConcurrentCalls: 500 }
 * ```
 *
 * Everything but `kind` is that component's own YAML config, checked by its own schema
 * when the config is parsed, so a typo is refused before anything is published or
 * started. What each instance gets from its flags or environment (the gateway's `id`,
 * ports) may be left out. Secret values are refused, as in `env`: the configuration is
 * read by every host and operator, so secrets stay in files on the hosts (the schemas
 * take `…File` paths) or in the host's environment.
 *
 * A launcher hands the settings to each instance as a file (mode 0600) named by the
 * component and the digest of its content, through the component's config variable
 * (HALYARD_GATEWAY_CONFIG, …); flags and environment still override the file, as always.
 */
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { z } from 'zod';
import { cacheConfig } from '../cache/config.js';
import { discoveryConfigSchema } from '../discovery/config.js';
import { gatewayConfigSchema } from '../gateway/config.js';

/** Each kind's schema and the variable its program reads its config file's name from. */
const KINDS = {
  gateway: { schema: gatewayConfigSchema, configEnv: 'HALYARD_GATEWAY_CONFIG' },
  discovery: { schema: discoveryConfigSchema, configEnv: 'HALYARD_DISCOVERY_CONFIG' },
  cache: { schema: cacheConfig, configEnv: 'HALYARD_CACHE_CONFIG' },
} as const;

export type SettingsKind = keyof typeof KINDS;

/** Keys that say they hold a secret value (`meshSecret`, `hs256Secret`, …), not a file. */
const SECRET_KEY = /(SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?)$/i;
const PRIVATE_KEY_PEM = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/**
 * A component's `settings:`. The value is kept as written (defaults are the program's to
 * apply, on its own host: discovery's replica id defaults to the host name).
 */
export const componentSettings = z
  .looseObject({ kind: z.enum(Object.keys(KINDS) as [SettingsKind, ...SettingsKind[]]) })
  .superRefine((settings, ctx) => {
    const { kind, ...config } = settings;
    for (const [at, message] of secretValues(config, []))
      ctx.addIssue({ code: 'custom', path: at, message });
    const result = KINDS[kind].schema.safeParse(config);
    if (result.success) return;
    for (const issue of result.error.issues) {
      // Missing here, given to each instance by its flags or environment.
      if (issue.code === 'invalid_type' && valueAt(config, issue.path) === undefined) continue;
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) {
          ctx.addIssue({ code: 'custom', path: [...issue.path, key], message: 'unknown field' });
        }
      } else {
        ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
      }
    }
  });

export type ComponentSettings = z.infer<typeof componentSettings>;

/** Secret values in a settings tree, as [path, message]. */
function secretValues(value: unknown, at: PropertyKey[]): Array<[PropertyKey[], string]> {
  if (typeof value === 'string') {
    return PRIVATE_KEY_PEM.test(value)
      ? [[at, 'holds a private key: put it in a file on the hosts and name the file']]
      : [];
  }
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([key, child]) =>
    typeof child === 'string' && SECRET_KEY.test(key)
      ? [
          [
            [...at, key],
            'a secret value: the mesh configuration is read by every host and operator; give it to the component on each host (a file it names, or the host launcher’s environment)',
          ] as [PropertyKey[], string],
        ]
      : secretValues(child, [...at, Array.isArray(value) ? Number(key) : key]),
  );
}

function valueAt(value: unknown, at: readonly PropertyKey[]): unknown {
  let node = value;
  for (const key of at) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/**
 * The directory a host's launcher writes settings files to: its own (mode 0700), in the
 * temporary directory, one per host id so that launchers of several hosts on one
 * machine (tests, the local mesh) do not share it.
 */
export function settingsDir(hostId: string): string {
  return path.join(tmpdir(), `halyard-launcher-${hostId}-settings`);
}

/** What an instance is given when its settings file could not be written; its error shows it. */
export const UNWRITTEN = '(settings file not written: see the launcher log HALL0026E)';

/**
 * The environment that hands `settings` to an instance of `component`: the component's
 * config variable naming a file in `dir` that holds them (written unless it is there:
 * the name is the content's digest). Empty when the component has no settings.
 *
 * Synchronous because instances are launched synchronously; the files are small. A
 * write that fails is given to `onUnwritten` and does not stop the launcher: the
 * variable then names no file but the failure, so the instance fails to read it (never
 * starting on defaults, nor on a file it cannot be sure this user wrote), and its
 * restart policy tries again.
 */
export function settingsEnv(
  component: string,
  config: { readonly settings?: ComponentSettings | undefined },
  dir: string,
  onUnwritten: (error: Error) => void = () => {},
): Record<string, string> {
  if (!config.settings) return {};
  const { kind, ...settings } = config.settings;
  const content = `# Settings of ${component} (${kind}) from the launcher's configuration.\n${stringify(settings)}`;
  const digest = createHash('sha256').update(content).digest('hex').slice(0, 16);
  const file = path.join(dir, `${component}-${digest}.yaml`);
  const { configEnv } = KINDS[kind];
  try {
    // The directory is checked every time: a file found in it must be one this user wrote.
    ownDirectory(dir);
    if (!existsSync(file)) writeWhole(file, content);
  } catch (error) {
    onUnwritten(error instanceof Error ? error : new Error(String(error)));
    return { [configEnv]: UNWRITTEN };
  }
  return { [configEnv]: file };
}

/** Makes `dir`, or checks that it is this user's alone (it may be in a shared /tmp). */
function ownDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = lstatSync(dir);
  if (!stat.isDirectory() || stat.uid !== process.getuid?.() || (stat.mode & 0o077) !== 0) {
    throw new Error(`${dir} is not a directory of this user's alone`);
  }
}

/** Writes `file` whole: a reader never sees it half written. */
function writeWhole(file: string, content: string): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, content, { mode: 0o600 });
  chmodSync(temporary, 0o600);
  renameSync(temporary, file);
}
