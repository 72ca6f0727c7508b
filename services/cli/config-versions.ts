/**
 * What the `config` commands share: who is applying (the author recorded with a
 * version), validating a mesh configuration before anything is published, publishing
 * on top of a version, and a version's JSON.
 */
import * as os from 'node:os';
import { InvalidArgumentError } from 'commander';
import {
  ConfigConflictError,
  type MeshConfigStore,
  type MeshConfigVersion,
} from '../../bus/index.js';
import { ConfigError } from '../common/config.js';
import { describeChange, type MeshConfig, parseMeshConfig } from '../launcher/mesh-config.js';
import { cliSecurity } from './connect.js';
import { CliError, ExitCodes } from './errors.js';

/** A version number argument: 1 or more. */
export function versionArg(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw new InvalidArgumentError('expected a version number (1 or more)');
  }
  return Number(value);
}

/** `alice@ops-1 (operator)`: the OS user and host, and the bus role when there is one. */
export function author(): string {
  const role = cliSecurity().role;
  return `${os.userInfo().username}@${os.hostname()}${role ? ` (${role})` : ''}`;
}

/** The config, or a CliError listing every problem (field path and line), one a line. */
export function validated(text: string, source: string): MeshConfig {
  try {
    return parseMeshConfig(text, source);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const count = error.problems.length;
    throw new CliError(
      `${source}: refused, nothing published (${count} problem${count === 1 ? '' : 's'}):\n${error.problems
        .map((p) => `  ${p}`)
        .join('\n')}`,
      ExitCodes.failed,
      { cause: error },
    );
  }
}

/** The version, or a CliError naming the latest. */
export async function versionOf(
  store: MeshConfigStore,
  version: number,
): Promise<MeshConfigVersion> {
  const found = await store.get(version);
  if (found) return found;
  const latest = await store.latest();
  throw new CliError(
    `no version ${version} of the mesh configuration (${latest ? `latest: ${latest.version}` : 'none published yet'})`,
  );
}

/** The latest version, or a CliError saying none was published. */
export async function latestOf(store: MeshConfigStore): Promise<MeshConfigVersion> {
  const latest = await store.latest();
  if (!latest)
    throw new CliError('no mesh configuration published yet: `halyard config apply FILE`');
  return latest;
}

/** What `next` changes in `base`; a base that no longer parses is summarised as replaced. */
export function summaryOf(base: MeshConfigVersion | undefined, next: MeshConfig): string {
  if (!base) return describeChange(undefined, next);
  let previous: MeshConfig;
  try {
    previous = parseMeshConfig(base.content, `version ${base.version}`);
  } catch {
    return `replaces version ${base.version}, which no longer validates`;
  }
  return describeChange(previous, next);
}

/**
 * Publishes `content` on top of `basedOn`; losing to another publish is a CliError
 * naming the version that won, who published it and when.
 */
export async function publishOn(
  store: MeshConfigStore,
  next: { basedOn: number; content: string; summary: string; restartUnchanged?: boolean },
): Promise<MeshConfigVersion> {
  try {
    return await store.publish({ ...next, author: author() });
  } catch (error) {
    if (error instanceof ConfigConflictError) {
      const won = error.current;
      throw new CliError(
        `not published: the mesh configuration moved on from version ${next.basedOn}; version ${won.version} ` +
          `by ${won.author} at ${won.publishedAt.toISOString()} won (${won.summary}). ` +
          `See \`halyard config diff ${next.basedOn} ${won.version}\`, then apply again.`,
      );
    }
    if (error instanceof RangeError) throw new CliError(error.message, ExitCodes.usage);
    throw error;
  }
}

/** A version in `--json` output; the content only where asked. */
export function versionJson(v: MeshConfigVersion, withContent: boolean) {
  return {
    version: v.version,
    basedOn: v.basedOn,
    author: v.author,
    publishedAt: v.publishedAt.toISOString(),
    summary: v.summary,
    ...(withContent ? { content: v.content } : {}),
  };
}
