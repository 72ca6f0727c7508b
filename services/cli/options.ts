/**
 * Flags shared by several commands, and the parsers that turn flag values into numbers
 * (a bad value is a usage error naming what was expected).
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { BusEnv } from '../common/bus-settings.js';

/** The flags of every command that reads the bus. */
export interface BusFlags {
  readonly servers?: string;
  readonly json: boolean;
}

/** Where `--servers` came from, for error messages: the flag or its environment variable. */
export interface ServersGiven {
  readonly servers: string;
  readonly from: string;
}

/** `--servers` (env HALYARD_NATS): where a command finds the bus. */
export function serversOption(): Option {
  return new Option(
    '--servers <urls>',
    'comma-separated NATS URLs (default: the running `halyard up`, else nats://127.0.0.1:4222)',
  ).env(BusEnv.servers);
}

/** Adds `--servers` (env HALYARD_NATS) and `--json`. */
export function busOptions(cmd: Command): Command {
  return cmd.addOption(serversOption()).option('--json', 'machine-readable output', false);
}

/** The servers given to `cmd` by `--servers` or HALYARD_NATS; undefined when neither. */
export function serversGiven(cmd: Command): ServersGiven | undefined {
  const servers = cmd.getOptionValue('servers') as string | undefined;
  if (!servers) return undefined;
  const from = cmd.getOptionValueSource('servers') === 'env' ? BusEnv.servers : '--servers';
  return { servers, from };
}

/** `10m`, `90s`, `2h`, `1d` → milliseconds. */
export function parseDuration(value: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
  return Number(m[1]) * unit;
}

export function durationArg(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined)
    throw new InvalidArgumentError('expected a duration like 90s, 10m, 2h or 1d');
  return ms;
}

export function portArg(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isInteger(n) || n < 1 || n > 65_535) {
    throw new InvalidArgumentError('expected a port number (1–65535)');
  }
  return n;
}

/** Whole seconds, 1 or more. */
export function secondsArg(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw new InvalidArgumentError('expected a number of seconds (1 or more)');
  }
  return Number(value);
}

/** Seconds, fractions allowed, more than 0. */
export function positiveSecondsArg(value: string): number {
  const n = Number(value);
  if (!(n > 0)) throw new InvalidArgumentError('expected seconds > 0');
  return n;
}

export function seqArg(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw new InvalidArgumentError('expected a stream sequence number (1 or more)');
  }
  return Number(value);
}

export function instanceArg(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected an instance number (0 = all)');
  return Number(value);
}
