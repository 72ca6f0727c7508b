/** A Halyard component (gateway, cache, …) as its own process, for tests that kill it. */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { until } from './wait.js';

export interface ComponentProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<unknown>;
  /** The body of its admin `/metrics`. */
  metrics(): Promise<string>;
}

/** Runs `main` (e.g. services/gateway/main.ts) with `args`; resolves once `/readyz` says ready. */
export async function spawnComponent(
  main: string,
  args: readonly string[],
  adminPort: number,
): Promise<ComponentProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', main, ...args], { stdio: 'ignore' });
  const exited = once(child, 'exit');
  const admin = `http://127.0.0.1:${adminPort}`;
  try {
    await until(
      `${main} ready`,
      async () => (await fetch(`${admin}/readyz`).catch(() => undefined))?.ok,
      30_000,
      100,
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return { child, exited, metrics: async () => (await fetch(`${admin}/metrics`)).text() };
}
