/**
 * The `halyard` command's log: pino lines with stable message ids on stderr, so stdout
 * carries only what is meant for humans (the summary). On a terminal the lines are
 * formatted for reading; elsewhere they are JSON, one per line.
 */
import { type DestinationStream, type Logger, pino } from 'pino';
import { componentLogger } from '../common/logger.js';

export type { Logger };

/** Stable ids of the CLI's log lines (`HALX` + number + severity I/W/E). */
export const CliLogIds = {
  upStarting: 'HALX0001I',
  nodeStarting: 'HALX0002I',
  clusterWaiting: 'HALX0003I',
  clusterReady: 'HALX0004I',
  busProvisioned: 'HALX0005I',
  upReady: 'HALX0006I',
  meshStarting: 'HALX0007I',
  busSecretsMade: 'HALX0008I',
  meshConfigPublished: 'HALX0009I',
  meshStopping: 'HALX0013I',
  stopping: 'HALX0010I',
  nodeStopped: 'HALX0011I',
  stopped: 'HALX0012I',
  staleLock: 'HALX0020W',
  leftoverServer: 'HALX0021W',
  forcedStop: 'HALX0023W',
  busInsecure: 'HALX0024W',
  alreadyRunning: 'HALX0030E',
  portInUse: 'HALX0031E',
  dataDirMismatch: 'HALX0032E',
  startFailed: 'HALX0033E',
  nodeCrashed: 'HALX0034E',
  badOption: 'HALX0035E',
  meshFailed: 'HALX0036E',
  superviseRestarting: 'HALX0040W',
  superviseRestarted: 'HALX0041I',
  superviseGaveUp: 'HALX0042E',
} as const;

export type LogFormat = 'json' | 'pretty';

/**
 * `HALYARD_LOG_FORMAT` (json | pretty) chooses the format; by default pretty on a terminal.
 * Pretty needs pino-pretty (a dev dependency); without it the lines stay JSON.
 */
export async function cliLogger(name: string): Promise<Logger> {
  const wanted = process.env.HALYARD_LOG_FORMAT ?? (process.stderr.isTTY ? 'pretty' : 'json');
  const json = pino.destination({ dest: 2, sync: true });
  let destination: DestinationStream = json;
  if (wanted === 'pretty') {
    try {
      const { default: pretty } = await import('pino-pretty');
      destination = pretty({
        destination: 2,
        sync: true,
        colorize: process.stderr.isTTY,
        translateTime: 'HH:MM:ss.l',
        singleLine: true,
        ignore: 'pid,hostname,name,msgId',
        messageFormat: (log, messageKey) =>
          `${typeof log.msgId === 'string' ? `${log.msgId} ` : ''}${String(log[messageKey])}`,
      });
    } catch {
      // pino-pretty is not installed (production install): JSON it is.
    }
  }
  return componentLogger(name, { destination });
}
