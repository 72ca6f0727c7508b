/** Processes for tests: the echo service in a child process (see echo-server.ts), /proc scans. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { procStat } from '../../services/common/proc.js';

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
 * Live processes whose environment (`/proc/<pid>/environ`) has every `wanted` variable
 * with the value given (a function: any value it accepts), by pid. Zombies are left out.
 */
export function processesWithEnvironment(
  wanted: Record<string, string | ((value: string) => boolean)>,
): Map<number, Record<string, string>> {
  const found = new Map<number, Record<string, string>>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/environ`, 'utf8');
    } catch {
      continue; // gone, or not ours
    }
    const env: Record<string, string> = {};
    for (const item of text.split('\0')) {
      const eq = item.indexOf('=');
      if (eq > 0) env[item.slice(0, eq)] = item.slice(eq + 1);
    }
    const matches = Object.entries(wanted).every(([name, want]) => {
      const value = env[name];
      if (value === undefined) return false;
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
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = procStat(Number(entry))?.ppid; // undefined: exited meanwhile
    if (ppid !== undefined) parents.set(Number(entry), ppid);
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
