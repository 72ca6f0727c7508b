/**
 * `halyard …` run as a separate process, as an operator runs it, against a test
 * cluster: through tsx from the sources, with `--servers` naming the cluster and, on a
 * locked bus, the role's files given as a component is given them.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NatsCluster } from './nats-cluster.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Resolves whatever the exit code; `role` only on a locked cluster. */
export function runCli(
  cluster: NatsCluster,
  args: readonly string[],
  options: { role?: string; timeoutMs?: number } = {},
): Promise<CliRun> {
  const env = options.role
    ? {
        ...process.env,
        HALYARD_NATS_ROLES: path.join(cluster.bundle!, 'roles'),
        HALYARD_NATS_ROLE: options.role,
      }
    : process.env;
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ['--import', 'tsx', 'services/cli/main.ts', ...args, '--servers', cluster.servers.join(',')],
      { cwd: ROOT, env, timeout: options.timeoutMs ?? 120_000 },
      (error, stdout, stderr) =>
        resolve({ code: error ? (child.exitCode ?? 1) : 0, stdout, stderr }),
    );
  });
}
