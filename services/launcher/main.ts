/**
 * `node services/launcher/main.ts --config launcher.yaml --host-id host-a --nats nats://…`
 *
 * Runs a host's launcher until SIGTERM or SIGINT, then stops every child in reverse
 * dependency order, waits for the lifecycle events to be stored and closes the bus.
 * An invalid config exits with status 2 and every problem listed.
 */
import { Command } from 'commander';
import { pino } from 'pino';
import { Bus } from '../../bus/index.js';
import { startAdmin } from '../common/admin.js';
import { ConfigError } from '../common/config.js';
import { type LauncherConfig, loadLauncherConfig } from './config.js';
import { Launcher } from './launcher.js';
import { LogIds } from './log-ids.js';

const program = new Command('halyard-launcher')
  .requiredOption('--config <file>', 'launcher YAML config')
  .option('--host-id <id>', 'this host (overrides hostId in the config)')
  .option('--nats <servers>', 'comma-separated NATS URLs', 'nats://127.0.0.1:4222')
  .option('--grpc <address>', 'gRPC control address', '127.0.0.1:7400')
  .option('--admin-port <port>', 'admin HTTP port (/healthz /readyz /metrics)', '7401')
  .parse();

const opts = program.opts<{
  config: string;
  hostId?: string;
  nats: string;
  grpc: string;
  adminPort: string;
}>();
const logger = pino({ name: 'halyard-launcher', level: process.env.HALYARD_LOG_LEVEL ?? 'info' });

// Fail fast on a bad file, before touching the bus.
let config: LauncherConfig;
try {
  config = await loadLauncherConfig(opts.config);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  logger.error(
    { msgId: LogIds.configInvalid, file: error.file, problems: error.problems },
    'invalid config',
  );
  process.stderr.write(
    `invalid config ${error.file}:\n${error.problems.map((p) => `  - ${p}\n`).join('')}`,
  );
  process.exit(2);
}

let launcher: Launcher | undefined;
// Before any child can exist a signal simply ends the process; once children may be
// starting it is acted on when the start is done, so that they are stopped too.
let childrenMayRun = false;
let signalled: string | undefined;
let stopping = false;
const stop = async () => {
  if (stopping || !launcher) return;
  stopping = true;
  logger.info({ msgId: LogIds.launcherStopping, signal: signalled }, `received ${signalled}`);
  await launcher.shutdown();
  await Promise.all([bus.close(), admin.close()]);
  process.exit(0);
};
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (!childrenMayRun) process.exit(128 + (signal === 'SIGTERM' ? 15 : 2));
    signalled ??= signal;
    void stop();
  });
}

const admin = await startAdmin({
  port: Number(opts.adminPort),
  notReady: () => (launcher ? undefined : 'starting components'),
});
const bus = await Bus.connect({
  servers: opts.nats.split(','),
  name: `launcher-${opts.hostId ?? 'host'}`,
  logger,
});
await bus.provision();
childrenMayRun = true;
launcher = await Launcher.start({
  configFile: opts.config,
  config,
  hostId: opts.hostId,
  bus,
  logger,
  grpcAddress: opts.grpc,
});
logger.info(
  {
    msgId: LogIds.listening,
    grpcPort: launcher.grpcPort,
    adminPort: admin.port,
    launcherId: launcher.launcherId,
  },
  'launcher control listening',
);
if (signalled) await stop();
