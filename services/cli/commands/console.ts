/**
 * `halyard console`: the read-only web console (services/console), fed live from the
 * bus, until Ctrl-C. Unlike the other commands it stays connected: it rides out bus
 * node failures by reconnecting.
 */
import { type Command, Option } from 'commander';
import { pino } from 'pino';
import { Bus } from '../../../bus/index.js';
import { loadYamlConfig } from '../../common/config.js';
import { ConsoleConfigError, checkExposure } from '../../console/access.js';
import { type ConsoleConfig, consoleConfig, DEFAULT_LISTEN } from '../../console/config.js';
import { parseListen, startConsole } from '../../console/server.js';
import { resolveServers } from '../connect.js';
import { CliError, ExitCodes, reportError } from '../errors.js';
import { serversGiven } from '../options.js';

interface ConsoleFlags {
  readonly listen?: string;
  readonly config?: string;
}

export function addConsoleCommand(program: Command): void {
  program
    .command('console')
    .description(
      'a read-only web console of services, launchers, gateways and events, live from the bus',
    )
    .option('--listen <host:port>', `where to serve it (default ${DEFAULT_LISTEN})`)
    .option(
      '--config <file>',
      'YAML: listen, tokens [{sha256, identity}], tls {certFile, keyFile, clientCaFile, requireClientCert}',
    )
    .addOption(
      new Option(
        '--servers <urls>',
        'comma-separated NATS URLs (default: the running `halyard up`, else nats://127.0.0.1:4222)',
      ).env('HALYARD_NATS'),
    )
    .addHelpText(
      'after',
      '\nAnywhere but loopback it needs access tokens or required TLS client certificates (--config).\n' +
        'Example:\n  halyard console --listen 127.0.0.1:9000',
    )
    .action(async (flags: ConsoleFlags, cmd: Command) => {
      let bus: Bus | undefined;
      try {
        const config: ConsoleConfig = flags.config
          ? await loadYamlConfig(consoleConfig, flags.config)
          : consoleConfig.parse({});
        const listen = flags.listen ?? config.listen;
        // Refused before waiting for the bus, which may take long.
        checkExposure(parseListen(listen).host, config.tokens, config.tls);
        const { servers } = resolveServers(serversGiven(cmd));
        process.stderr.write(`halyard console: connecting to the bus at ${servers.join(', ')}…\n`);
        const logger = pino(
          { name: 'halyard-console', level: process.env.HALYARD_LOG_LEVEL ?? 'info' },
          pino.destination(2),
        );
        bus = await Bus.connect({ servers, name: 'halyard-console', logger });
        const served = await startConsole({
          bus,
          logger,
          listen,
          tokens: config.tokens,
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
