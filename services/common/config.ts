/**
 * Reading a component's YAML config: parse, validate with zod, and on any problem
 * throw a ConfigError that names the file, the path of the field and what was expected.
 */
import { readFile } from 'node:fs/promises';
import { isMap, isNode, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
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

/** YAML text parsed, with where each field is written. */
export interface YamlText {
  /** The plain value (an empty text is `{}`). */
  readonly value: unknown;
  /**
   * The 1-based line of the field at `path`, or of its closest enclosing field that
   * exists (a missing field is reported where it belongs).
   */
  lineOf(path: readonly PropertyKey[]): number;
  /** The lines a top-level field spans, from its key to the end of its value; undefined if absent. */
  linesOf(path: readonly [string]): { first: number; last: number } | undefined;
}

/** Parses YAML text; a syntax error is a ConfigError naming `file`, line and column. */
export function parseYamlText(text: string, file: string): YamlText {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter });
  if (document.errors.length > 0) {
    throw new ConfigError(
      file,
      document.errors.map((error) => {
        const at = error.linePos?.[0];
        return `${at ? `line ${at.line}, column ${at.col}: ` : ''}${error.message.split('\n')[0]}`;
      }),
    );
  }
  const lineAt = (offset: number) => lineCounter.linePos(offset).line;
  return {
    value: document.toJS() ?? {},
    lineOf(path) {
      let node: unknown = document.contents;
      let line = isNode(node) && node.range ? lineAt(node.range[0]) : 1;
      for (const segment of path) {
        if (isMap(node)) {
          const pair = node.items.find(
            (p) => isScalar(p.key) && String(p.key.value) === String(segment),
          );
          if (!pair) break;
          if (isNode(pair.key) && pair.key.range) line = lineAt(pair.key.range[0]);
          node = pair.value;
        } else if (isSeq(node) && typeof segment === 'number' && isNode(node.items[segment])) {
          node = node.items[segment];
          const range = (node as { range?: [number, number, number] }).range;
          if (range) line = lineAt(range[0]);
        } else {
          break;
        }
      }
      return line;
    },
    linesOf([key]) {
      const top = document.contents;
      if (!isMap(top)) return undefined;
      const pair = top.items.find((p) => isScalar(p.key) && p.key.value === key);
      const start = isNode(pair?.key) ? pair.key.range?.[0] : undefined;
      const end = isNode(pair?.value) ? pair.value.range?.[1] : start;
      if (start === undefined || end === undefined) return undefined;
      return { first: lineAt(start), last: lineAt(Math.max(start, end - 1)) };
    },
  };
}

/** The file's parsed YAML, not yet validated (an empty file is `{}`). */
export async function readYamlFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, [`cannot read: ${(error as Error).message}`]);
  }
  return parseYamlText(text, file).value;
}

export async function loadYamlConfig<S extends z.ZodType>(
  schema: S,
  file: string,
): Promise<z.infer<S>> {
  return validateConfig(schema, await readYamlFile(file), file);
}
