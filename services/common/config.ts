/**
 * Reading a component's YAML config: parse, validate with zod, and on any problem
 * throw a ConfigError that names the file, the path of the field and what was expected.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(`${file}: ${problems.join('; ')}`);
  }
}

/**
 * Validates an already parsed value; `file` names its origin in errors. `originOf` may
 * name a more precise origin of a field (the flag or environment variable that set it).
 */
export function validateConfig<S extends z.ZodType>(
  schema: S,
  value: unknown,
  file: string,
  originOf: (path: readonly PropertyKey[]) => string | undefined = () => undefined,
): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new ConfigError(
    file,
    result.error.issues.map((issue) => {
      const where = issue.path.length ? issue.path.join('.') : '(top level)';
      const origin = originOf(issue.path);
      return `${where}${origin ? ` (from ${origin})` : ''}: ${issue.message}`;
    }),
  );
}

/** The file's parsed YAML, not yet validated (an empty file is `{}`). */
export async function readYamlFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, [`cannot read: ${(error as Error).message}`]);
  }
  try {
    return parseYaml(text) ?? {};
  } catch (error) {
    if (error instanceof YAMLParseError) {
      const at = error.linePos?.[0];
      throw new ConfigError(file, [
        `${at ? `line ${at.line}, column ${at.col}: ` : ''}${error.message.split('\n')[0]}`,
      ]);
    }
    throw error;
  }
}

export async function loadYamlConfig<S extends z.ZodType>(
  schema: S,
  file: string,
): Promise<z.infer<S>> {
  return validateConfig(schema, await readYamlFile(file), file);
}
