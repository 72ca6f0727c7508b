/**
 * Loading a component's YAML config: parse, validate with zod, and on any problem
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

/** Validates an already parsed value; `file` names its origin in errors. */
export function validateConfig<S extends z.ZodType>(
  schema: S,
  value: unknown,
  file: string,
): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new ConfigError(
    file,
    result.error.issues.map(
      (issue) => `${issue.path.length ? issue.path.join('.') : '(top level)'}: ${issue.message}`,
    ),
  );
}

export async function loadYamlConfig<S extends z.ZodType>(
  schema: S,
  file: string,
): Promise<z.infer<S>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, [`cannot read: ${(error as Error).message}`]);
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (error) {
    if (error instanceof YAMLParseError) {
      const at = error.linePos?.[0];
      throw new ConfigError(file, [
        `${at ? `line ${at.line}, column ${at.col}: ` : ''}${error.message.split('\n')[0]}`,
      ]);
    }
    throw error;
  }
  return validateConfig(schema, value ?? {}, file);
}
