/** A pino logger whose lines a test can read back. */
import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';

export interface CapturedLogs {
  readonly logger: Logger;
  readonly lines: Array<Record<string, unknown>>;
  /** Lines carrying this stable message id. */
  withId(msgId: string): Array<Record<string, unknown>>;
}

export function captureLogs(level = 'debug'): CapturedLogs {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  const logger = pino({ level }, sink);
  return { logger, lines, withId: (msgId) => lines.filter((line) => line.msgId === msgId) };
}
