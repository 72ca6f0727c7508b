/**
 * An echo server process that reports every unary call it runs (echo-server.ts
 * `--report-calls`), so a test can count how many times a request was executed, on
 * which instance, including one that it then kills.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./echo-server.ts', import.meta.url));

export interface CountingEcho {
  readonly instanceId: string;
  readonly address: string;
  /** Payloads of the unary calls this process started running, in order. */
  readonly ran: string[];
  /** Times this process started running a call with this payload. */
  executions(payload: string): number;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

export async function spawnCountingEcho(instanceId: string): Promise<CountingEcho> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', SCRIPT, '--instance', instanceId, '--port', '0', '--report-calls'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => children.delete(child));
  const ran: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const report = JSON.parse(line) as { port?: number; unary?: string };
      if (report.port !== undefined) resolve(report.port);
      else if (report.unary !== undefined) ran.push(report.unary);
    });
    child.once('exit', (code) =>
      reject(new Error(`echo-server exited with ${code} before serving`)),
    );
  });
  return {
    instanceId,
    address: `127.0.0.1:${port}`,
    ran,
    executions: (payload) => ran.filter((p) => p === payload).length,
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
