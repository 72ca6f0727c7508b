/**
 * How the CLI's commands find the bus: `--servers`, else `HALYARD_NATS`, else the
 * servers of the `halyard up` running for ./.halyard (its lock), else 127.0.0.1:4222.
 * An unreachable bus is a one-line message naming every address tried (exit 3).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pino } from 'pino';
import { Bus } from '../../bus/index.js';
import { DEFAULT_DATA_DIR } from './up.js';

/** Exit codes scripts can rely on. */
export const ExitCodes = {
  ok: 0,
  /** The command ran and found a problem (a failed call, a refused control request). */
  failed: 1,
  /** Invalid flags or arguments (commander's usage errors too). */
  usage: 2,
  /** The bus (or a gateway) could not be reached. */
  unreachable: 3,
} as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = ExitCodes.failed,
  ) {
    super(message);
  }
}

export interface ConnectionFlags {
  readonly servers?: string;
}

export function resolveServers(flags: ConnectionFlags): { servers: string[]; from: string } {
  const split = (v: string) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  if (flags.servers) return { servers: split(flags.servers), from: '--servers' };
  if (process.env.HALYARD_NATS)
    return { servers: split(process.env.HALYARD_NATS), from: 'HALYARD_NATS' };
  try {
    const lock = JSON.parse(fs.readFileSync(path.join(DEFAULT_DATA_DIR, 'up.lock'), 'utf8')) as {
      servers?: string[];
    };
    if (lock.servers?.length) return { servers: lock.servers, from: `${DEFAULT_DATA_DIR}/up.lock` };
  } catch {
    // no local up here
  }
  return { servers: ['nats://127.0.0.1:4222'], from: 'the default' };
}

/** Connects for one command; the logger is quiet unless HALYARD_LOG_LEVEL says otherwise. */
export async function connect(flags: ConnectionFlags): Promise<Bus> {
  const { servers, from } = resolveServers(flags);
  const logger = pino(
    { name: 'halyard-cli', level: process.env.HALYARD_LOG_LEVEL ?? 'silent' },
    pino.destination(2),
  );
  try {
    return await Bus.connect({ servers, name: 'halyard-cli', logger, failFast: true });
  } catch (error) {
    throw new CliError(
      `cannot reach the Halyard bus: tried ${servers.join(', ')} (from ${from}): ${(error as Error).message}. ` +
        'Is `halyard up` (npm start) running? Otherwise pass --servers nats://host:4222,… or set HALYARD_NATS.',
      ExitCodes.unreachable,
    );
  }
}

/** Runs `body` with a bus, closes it, and turns errors into messages and exit codes. */
export async function withBus(
  flags: ConnectionFlags,
  body: (bus: Bus) => Promise<number | undefined>,
): Promise<void> {
  let bus: Bus | undefined;
  try {
    bus = await connect(flags);
    process.exitCode = (await body(bus)) ?? ExitCodes.ok;
  } catch (error) {
    reportError(error);
  } finally {
    await bus?.close().catch(() => {});
  }
}

export function reportError(error: unknown): void {
  if (error instanceof CliError) {
    process.stderr.write(`halyard: ${error.message}\n`);
    process.exitCode = error.exitCode;
    return;
  }
  process.stderr.write(`halyard: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = ExitCodes.failed;
}

/** `10m`, `90s`, `2h`, `1d` → milliseconds. */
export function parseDuration(value: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
  return Number(m[1]) * unit;
}

/** `1234` ms → `1.2s`, `3m04s`, `2h05m`. */
export function formatAge(ms: number): string {
  if (ms < 0) ms = 0;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400)
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}

/** A plain text table: columns padded to their widest cell. */
export function table(header: string[], rows: string[][], indent = '  '): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    `${indent}${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')}`.trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
