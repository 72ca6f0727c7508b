/**
 * The root of the Halyard checkout (or install, /opt/halyard): the nearest directory above
 * this module that holds package.json. Found rather than fixed, so the same code works
 * from the TypeScript sources (services/common/) and the built JavaScript
 * (dist/services/common/), which sit at different depths.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (dir === path.dirname(dir)) throw new Error(`no package.json above ${from}`);
  }
}

export const REPO_ROOT = findRoot(path.dirname(fileURLToPath(import.meta.url)));
