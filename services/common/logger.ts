/** A component's logger: JSON lines on stdout at HALYARD_LOG_LEVEL (default info). */
import { type Logger, pino } from 'pino';

export function componentLogger(name: string): Logger {
  return pino({ name, level: process.env.HALYARD_LOG_LEVEL ?? 'info' });
}
