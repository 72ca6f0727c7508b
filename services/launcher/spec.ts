/**
 * What process a component's config starts, as a digest: two configs with the same
 * digest run the same process (counts, placement and start order are not part of it).
 * Each child is recorded with the digest and the configuration version it was started
 * with, so that a launcher that adopts it later knows whether it runs what the
 * configuration asks for now.
 */
import { createHash } from 'node:crypto';
import type { ComponentConfig } from './config.js';

/** What a child's process was started as. */
export interface StartedSpec {
  /** The mesh configuration version whose config started it (0: the file, or not known). */
  readonly configVersion: number;
  /** specDigest of that config ('' when not known). */
  readonly specDigest: string;
}

/** SHA-256 (hex) of what makes two configs run different processes. */
export function specDigest(config: ComponentConfig): string {
  const { instances: _i, hosts: _h, dependsOn: _d, ...shape } = config;
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex');
}

export const specOf = (config: ComponentConfig, configVersion: number): StartedSpec => ({
  configVersion,
  specDigest: specDigest(config),
});
