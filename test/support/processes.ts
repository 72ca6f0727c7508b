/** Processes for tests: the echo service in a child process (see echo-server.ts), /proc scans. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { environmentValueOf, procStat } from '../../services/common/proc.js';

const SCRIPT = fileURLToPath(new URL('./echo-server.ts', import.meta.url));

export interface EchoProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly instanceId: string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

export async function spawnEcho(args: {
  instanceId: string;
  nats?: string[];
  port?: number;
}): Promise<EchoProcess> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      SCRIPT,
      '--instance',
      args.instanceId,
      '--port',
      String(args.port ?? 0),
      ...(args.nats ? ['--nats', args.nats.join(',')] : []),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  exited.then(() => children.delete(child));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) =>
      reject(new Error(`echo-server exited with ${code} before serving`)),
    );
  });
  const { port } = JSON.parse(line) as { port: number };
  return {
    child,
    port,
    instanceId: args.instanceId,
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/**
 * Every pid on this machine, zombies included, from the listing of /proc
 * (services/common/proc.ts reads one process; this finds them). Throws where there is
 * no /proc, rather than let a scan find nothing and a test pass on it.
 */
export function allPids(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number);
}

/**
 * Live processes whose environment (`/proc/<pid>/environ`) has every `wanted` variable
 * with the value given (a function: any value it accepts), by pid, with the values of
 * those variables. Zombies are left out.
 */
export function processesWithEnvironment(
  wanted: Record<string, string | ((value: string) => boolean)>,
): Map<number, Record<string, string>> {
  const found = new Map<number, Record<string, string>>();
  for (const pid of allPids()) {
    const env: Record<string, string> = {};
    const matches = Object.entries(wanted).every(([name, want]) => {
      const value = environmentValueOf(pid, name); // undefined: unset, gone or not ours
      if (value === undefined) return false;
      env[name] = value;
      return typeof want === 'string' ? value === want : want(value);
    });
    if (matches && procStat(pid)?.state !== 'Z') found.set(pid, env);
  }
  return found;
}

/** Every live process below `root` (by parent pid), from /proc. */
export function descendants(root: number | undefined): number[] {
  if (!root) return [];
  const parents = new Map<number, number>();
  for (const pid of allPids()) {
    const ppid = procStat(pid)?.ppid; // undefined: exited meanwhile
    if (ppid !== undefined) parents.set(pid, ppid);
  }
  const found: number[] = [];
  const walk = (pid: number) => {
    for (const [child, parent] of parents) {
      if (parent === pid) {
        found.push(child);
        walk(child);
      }
    }
  };
  walk(root);
  return found;
}
