/**
 * How every component is configured: a YAML file, overridden by environment variables,
 * overridden by flags, validated as a whole by the component's strict zod schema so an
 * unknown or invalid field is refused with the file and the field named.
 *
 * A component declares its settings once (flag, environment variable, where the value
 * goes); the command line is built from them with commander, `.env()` included.
 */
import { Command, Option } from 'commander';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { ConfigError, readYamlFile, validateConfig } from './config.js';

export interface Setting {
  /**
   * The flag and its argument as commander writes them (`--nats <urls>`); a flag without
   * an argument (`--control`) sets `true`. Absent: the environment only, for secrets
   * (which a flag would show to anyone running `ps`) and what a launcher tells its children.
   */
  readonly flag?: string;
  /** Sets the value when the flag is absent. */
  readonly env?: string;
  /** Where the value goes in the config, dot-separated: `bus.servers`. */
  readonly path: string;
  readonly description: string;
  /** From the text given to the config's value (zod validates the result); default: the text. */
  readonly parse?: (text: string) => unknown;
}

/** A config's schema and the settings that may set its fields; the file named by `--config`. */
export interface SettingsSpec<S extends z.ZodType> {
  readonly schema: S;
  /** Names the YAML file when `--config` is absent: `HALYARD_GATEWAY_CONFIG`. */
  readonly configEnv?: string;
  /** Whether a file must be given; otherwise everything may come from defaults. */
  readonly fileRequired?: boolean;
  readonly settings: readonly Setting[];
}

/** A component's program: its settings, and its name and description for help and errors. */
export interface ComponentSpec<S extends z.ZodType> extends SettingsSpec<S> {
  /** The program's name in help and errors: `halyard-gateway`. */
  readonly name: string;
  readonly description: string;
  readonly configEnv: string;
}

export interface LoadedConfig<T> {
  readonly config: T;
  /** The YAML file it was read from, if any. */
  readonly file: string | undefined;
}

/** `a, b,c` → `['a', 'b', 'c']`: the form of every list given by flag or environment. */
export const list = (text: string): string[] =>
  text
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);

interface Supplied {
  readonly path: readonly string[];
  readonly value: unknown;
  /** The flag or variable, for error messages. */
  readonly origin: string;
}

/**
 * Parses `argv` (the arguments after the script) and the environment, reads the file
 * and returns the validated config; throws ConfigError listing every problem. Flags
 * it does not know end the process with commander's usage error, as `--help` does.
 */
export async function loadComponentConfig<S extends z.ZodType>(
  spec: ComponentSpec<S>,
  argv: readonly string[],
): Promise<LoadedConfig<z.infer<S>>> {
  const command = addSettings(new Command(spec.name).description(spec.description), spec);
  command.parse(argv, { from: 'user' });
  return configFrom(command, spec);
}

/**
 * Adds `--config` and the flags of `spec`'s settings to `command` (a component's program
 * or one of the CLI's commands); once commander has parsed it, `configFrom` reads the config.
 */
export function addSettings<C extends Command>(command: C, spec: SettingsSpec<z.ZodType>): C {
  const config = new Option('-c, --config <file>', 'YAML config file').makeOptionMandatory(
    spec.fileRequired ?? false,
  );
  if (spec.configEnv) config.env(spec.configEnv);
  command.addOption(config);
  for (const setting of spec.settings) {
    if (!setting.flag) continue;
    const option = new Option(setting.flag, setting.description);
    if (setting.env) option.env(setting.env);
    command.addOption(option);
  }
  const envOnly = spec.settings.filter((setting) => !setting.flag && setting.env);
  if (envOnly.length) {
    command.addHelpText(
      'after',
      `\nEnvironment only:\n${envOnly.map((s) => `  ${s.env}  ${s.description}\n`).join('')}`,
    );
  }
  return command;
}

/**
 * The validated config of a `command` that `addSettings` prepared and commander parsed:
 * the file, overridden by the environment, overridden by flags. Throws ConfigError.
 */
export async function configFrom<S extends z.ZodType>(
  command: Command,
  spec: SettingsSpec<S>,
): Promise<LoadedConfig<z.infer<S>>> {
  const values = command.opts<Record<string, unknown>>();
  const supplied: Supplied[] = [];
  const supply = (setting: Setting, given: unknown, origin: string) => {
    // An empty variable counts as unset, as in a shell's `${VAR:-default}`.
    if (given === undefined || given === '') return;
    // A flag without an argument (`--control`) gives `true`.
    const value = typeof given === 'string' && setting.parse ? setting.parse(given) : given;
    supplied.push({ path: setting.path.split('.'), value, origin });
  };
  for (const setting of spec.settings) {
    if (setting.flag) {
      const option = new Option(setting.flag);
      const key = option.attributeName();
      const fromEnv = command.getOptionValueSource(key) === 'env';
      supply(setting, values[key], (fromEnv ? setting.env : option.long) ?? setting.path);
    } else if (setting.env) {
      supply(setting, process.env[setting.env], setting.env);
    }
  }

  const file = (values.config as string | undefined) || undefined;
  const config = file ? await readYamlFile(file) : {};
  for (const { path, value } of supplied) setIn(config, path, value);
  const originOf = (issuePath: readonly PropertyKey[]) =>
    supplied.find(({ path }) => path.every((key, i) => issuePath[i] === key))?.origin;
  return {
    config: validateConfig(spec.schema, config, file ?? '(flags and environment)', originOf),
    file,
  };
}

/**
 * Sets `path` in `target`, creating the objects on the way. Where the file holds
 * something else than an object the value is not set, so that validation reports the
 * file's mistake rather than hiding it.
 */
function setIn(target: unknown, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (!isRecord(node)) return;
    node[key] ??= {};
    node = node[key];
  }
  if (isRecord(node)) node[path.at(-1)!] = value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The config, or the end of the process: an invalid config is logged (`msgId`, the
 * file and every problem), listed on stderr and exits with status 2, before anything
 * else starts.
 */
export async function configOrExit<T>(
  loading: Promise<T>,
  logger: Logger,
  msgId: string,
): Promise<T> {
  try {
    return await loading;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    logger.error({ msgId, file: error.file, problems: error.problems }, 'invalid config');
    process.stderr.write(
      `invalid config ${error.file}:\n${error.problems.map((p) => `  - ${p}\n`).join('')}`,
    );
    process.exit(2);
  }
}
