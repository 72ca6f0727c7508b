/**
 * Every Halyard program's logger: pino JSON lines at the level HALYARD_LOG_LEVEL names,
 * on stdout unless the program writes its lines elsewhere (the CLI: stderr).
 */
import { type DestinationStream, type Logger, pino } from 'pino';

export interface LoggerOptions {
  /** The level when HALYARD_LOG_LEVEL is unset; default info. */
  readonly defaultLevel?: string;
  /** Where the lines go; default stdout. */
  readonly destination?: DestinationStream;
}

export function componentLogger(name: string, options: LoggerOptions = {}): Logger {
  const level = process.env.HALYARD_LOG_LEVEL ?? options.defaultLevel ?? 'info';
  return options.destination ? pino({ name, level }, options.destination) : pino({ name, level });
}
