import { type Logger, pino } from 'pino';

export type { Logger };

/**
 * Stable ids of the bus layer's log lines (`HALB` + number + severity), so that
 * operators can alert on them and they survive rewording.
 */
export const LogIds = {
  connected: 'HALB0001I',
  disconnected: 'HALB0002W',
  reconnecting: 'HALB0003W',
  reconnected: 'HALB0004I',
  connectionError: 'HALB0005E',
  closed: 'HALB0006I',
  clusterUpdate: 'HALB0007I',
  staleConnection: 'HALB0008W',
  provisioned: 'HALB0010I',
  bucketUpgraded: 'HALB0011W',
  serverTooOld: 'HALB0012E',
  lifetimesGiven: 'HALB0013W',
  invalidMessage: 'HALB0020W',
  publishRetry: 'HALB0030W',
  publishRecovered: 'HALB0031I',
  eventQueueFull: 'HALB0032E',
  viewReady: 'HALB0040I',
  viewFailed: 'HALB0041E',
  listenerFailed: 'HALB0042E',
  viewResumed: 'HALB0043W',
  handlerFailed: 'HALB0060W',
  leaseAcquired: 'HALB0070I',
  leaseLost: 'HALB0071W',
} as const;

/** The logger used when a caller gives none: JSON lines on stdout, as every component logs. */
export function defaultLogger(name: string): Logger {
  return pino({ name, level: process.env.HALYARD_LOG_LEVEL ?? 'info' });
}
