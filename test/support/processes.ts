/** The echo service in a child process (see echo-server.ts), for tests that kill it. */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

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
