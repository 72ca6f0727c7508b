/**
 * `halyard console`: the web console (services/console), fed live from the bus, until
 * Ctrl-C. Read-only unless `--control` (or `control: true`) offers the launchers'
 * restart, stop and start to callers with an access token. It connects as the other
 * commands do (the operator role on the local bus of `halyard up`, else the bus
 * variables) and, unlike them, stays connected: it rides out bus node failures.
 */
import type { Command } from 'commander';
import { pino } from 'pino';
import { Bus } from '../../../bus/index.js';
import { busOptions } from '../../common/bus-settings.js';
import { addSettings, configFrom } from '../../common/component-config.js';
import { componentLogger } from '../../common/logger.js';
import { ConsoleConfigError, checkControl, checkExposure } from '../../console/access.js';
import { consoleSettings } from '../../console/config.js';
import { parseListen, startConsole } from '../../console/server.js';
import { cliSecurity, resolveServers } from '../connect.js';
import { CliError, ExitCodes, reportError } from '../errors.js';
import { serversGiven, serversOption } from '../options.js';

/** The bus roles whose permissions include sending control requests (bus/roles.ts). */
const CONTROL_ROLES = ['operator', 'admin'];

export function addConsoleCommand(program: Command): void {
  addSettings(
    program
      .command('console')
      .description(
        'a web console of services, launchers, gateways and events, live from the bus; read-only unless --control',
      ),
    consoleSettings,
  )
    .addOption(serversOption())
    .addHelpText(
      'after',
      '\nThe YAML file holds listen, tokens [{sha256, identity}], tls {certFile, keyFile, clientCaFile, requireClientCert} and control; flags override it.\n' +
        'Anywhere but loopback it needs access tokens or required TLS client certificates (--config).\n' +
        'With --control, each action needs a listed token and a confirmation on the page, and is logged with its identity.\n' +
        'Example:\n  halyard console --listen 127.0.0.1:9000',
    )
    .action(async (_flags: unknown, cmd: Command) => {
      let bus: Bus | undefined;
      try {
        const { config } = await configFrom(cmd, consoleSettings);
        const { listen, control } = config;
        const security = cliSecurity();
        // Refused before waiting for the bus, which may take long.
        checkExposure(parseListen(listen).host, config.tokens, config.tls);
        checkControl(control, config.tokens);
        if (control && security.role && !CONTROL_ROLES.includes(security.role)) {
          throw new ConsoleConfigError(
            `console: control sends the launchers' control requests, which bus role ${security.role} may not: connect as operator (HALYARD_NATS_ROLE=operator)`,
          );
        }
        const { servers } = resolveServers(serversGiven(cmd));
        process.stderr.write(`halyard console: connecting to the bus at ${servers.join(', ')}…\n`);
        const logger = componentLogger('halyard-console', { destination: pino.destination(2) });
        bus = await Bus.connect(busOptions({ ...security, servers }, 'halyard-console', logger));
        const served = await startConsole({
          bus,
          logger,
          listen,
          tokens: config.tokens,
          control,
          ...(config.tls ? { tls: config.tls } : {}),
        });
        process.stdout.write(`console ${served.url}\n`);
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        await served.close();
      } catch (error) {
        reportError(
          error instanceof ConsoleConfigError
            ? new CliError(error.message, ExitCodes.usage)
            : error,
        );
      } finally {
        await bus?.close().catch(() => {});
      }
    });
}
