/**
 * How the CLI's commands find the bus: `--servers`, else `HALYARD_NATS`, else the
 * servers of the `halyard up` running for ./.halyard (its lock), else 127.0.0.1:4222.
 * TLS and the credential come from the same variables every component reads
 * (HALYARD_NATS_CA, …; see services/common/bus-settings.ts).
 * An unreachable bus is a one-line message naming every address tried (exit 3).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { pino } from 'pino';
import { Bus } from '../../bus/index.js';
import {
  type BusSettings,
  busOptions,
  busSecurityFromEnv,
  busSettings,
} from '../common/bus-settings.js';
import { list } from '../common/component-config.js';
import { componentLogger } from '../common/logger.js';
import { CliError, ExitCodes, reportError } from './errors.js';
import { type ServersGiven, serversGiven } from './options.js';
import { busSecretsDir } from './up/bus.js';
import { DEFAULT_DATA_DIR, readLock } from './up/lock.js';

export function resolveServers(given: ServersGiven | undefined): {
  servers: string[];
  from: string;
} {
  if (given) {
    return { servers: list(given.servers), from: given.from };
  }
  const lock = readLock(DEFAULT_DATA_DIR);
  if (lock?.servers?.length) return { servers: lock.servers, from: `${DEFAULT_DATA_DIR}/up.lock` };
  return { servers: ['nats://127.0.0.1:4222'], from: 'the default' };
}

/**
 * The bus settings' variables when any is set; else, when ./.halyard holds the locked
 * local bus of `halyard up`, its operator role.
 */
export function cliSecurity(): BusSettings {
  const given = busSecurityFromEnv();
  if (Object.keys(given).some((field) => field !== 'servers')) return given;
  const roles = path.join(busSecretsDir(DEFAULT_DATA_DIR), 'roles');
  if (!fs.existsSync(path.join(roles, 'operator'))) return given;
  return busSettings.parse({ roles, role: 'operator' });
}

/** Connects for one command; the logger is quiet unless HALYARD_LOG_LEVEL says otherwise. */
export async function connect(given: ServersGiven | undefined): Promise<Bus> {
  const { servers, from } = resolveServers(given);
  const logger = componentLogger('halyard-cli', {
    defaultLevel: 'silent',
    destination: pino.destination(2),
  });
  try {
    const settings = { ...cliSecurity(), servers };
    return await Bus.connect({ ...busOptions(settings, 'halyard-cli', logger), failFast: true });
  } catch (error) {
    throw new CliError(
      `cannot reach the Halyard bus: tried ${servers.join(', ')} (from ${from}): ${(error as Error).message}. ` +
        'Is `halyard up` (npm start) running? Otherwise pass --servers nats://host:4222,… or set HALYARD_NATS; ' +
        'a locked bus also needs its files: HALYARD_NATS_ROLES=<dir>/roles HALYARD_NATS_ROLE=operator (or HALYARD_NATS_CA, _CERT, _KEY and _NKEY).',
      ExitCodes.unreachable,
      { cause: error },
    );
  }
}

/**
 * Runs `body` with a bus found from `cmd`'s flags, closes it, and turns errors into
 * messages and exit codes.
 */
export async function withBus(
  cmd: Command,
  body: (bus: Bus) => Promise<number | undefined>,
): Promise<void> {
  let bus: Bus | undefined;
  try {
    bus = await connect(serversGiven(cmd));
    process.exitCode = (await body(bus)) ?? ExitCodes.ok;
  } catch (error) {
    reportError(error);
  } finally {
    await bus?.close().catch(() => {});
  }
}
