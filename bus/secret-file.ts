/**
 * Reads a secret (a private key, an nkey seed, a password, a creds file) from a file
 * only when the file is plainly this process's own: not a symlink that may point
 * anywhere, owned by the user running Halyard, and readable by no one else.
 */
import * as fs from 'node:fs';
import { BusConfigError } from './provision.js';

export function readSecretFile(file: string, what: string): Buffer {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(file);
  } catch (error) {
    throw new BusConfigError(`${what} ${file}: ${(error as Error).message}`, { cause: error });
  }
  if (stat.isSymbolicLink()) {
    throw new BusConfigError(`${what} ${file} is a symlink: name the file itself`);
  }
  if (!stat.isFile()) throw new BusConfigError(`${what} ${file} is not a regular file`);
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) {
    throw new BusConfigError(
      `${what} ${file} belongs to user ${stat.uid}, not to this process's user ${uid}: chown it`,
    );
  }
  if ((stat.mode & 0o077) !== 0) {
    throw new BusConfigError(
      `${what} ${file} is readable by others (mode ${(stat.mode & 0o777).toString(8)}): chmod 600 it`,
    );
  }
  return fs.readFileSync(file);
}
