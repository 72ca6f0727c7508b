import { InvalidMessageError } from './codec.js';
import { type Logger, LogIds } from './log.js';
import { busMetrics } from './metrics.js';

/**
 * The one way a bad bus message is handled: counted, logged once with its subject
 * and sequence, and skipped. It never stops a consumer.
 */
export function reportInvalid(logger: Logger, source: string, error: InvalidMessageError): void {
  busMetrics.invalidMessages.inc({ source });
  logger.warn(
    {
      msgId: LogIds.invalidMessage,
      source,
      subject: error.origin?.subject,
      seq: error.origin?.seq,
      type: error.typeName,
      reason: error.reason,
    },
    'invalid bus message skipped',
  );
}

export { InvalidMessageError };
