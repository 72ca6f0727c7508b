/**
 * `node services/discovery/main.ts`: runs one discovery replica until SIGTERM/SIGINT,
 * then leaves the replica set, closes its servers and the bus, and exits.
 */
import { Command } from 'commander';
import { pino } from 'pino';
import { ConfigError } from '../common/config.js';
import { type Overrides, replicaOptions, resolveConfig } from './config.js';
import { LogIds } from './log-ids.js';
import { DiscoveryReplica } from './replica.js';

const program = new Command('halyard-discovery')
  .description('Halyard discovery replica: the Registry gRPC API on the bus')
  .option('-c, --config <file>', 'YAML config file (env HALYARD_DISCOVERY_CONFIG)')
  .option('--nats <urls>', 'comma-separated NATS URLs (env HALYARD_NATS)')
  .option('--replica-id <id>', 'this replica’s id (env HALYARD_REPLICA_ID)')
  .option('--grpc-listen <host:port>', 'gRPC listen address (env HALYARD_GRPC_LISTEN)')
  .option('--admin-port <port>', 'admin HTTP port, 0 for any (env HALYARD_ADMIN_PORT)')
  .option('--static-file <file>', 'YAML static definitions (env HALYARD_STATIC_FILE)')
  .parse();

const logger = pino({ name: 'halyard-discovery', level: process.env.HALYARD_LOG_LEVEL ?? 'info' });

async function main(): Promise<void> {
  let replica: DiscoveryReplica;
  try {
    const config = await resolveConfig(program.opts<Overrides>(), process.env);
    replica = await DiscoveryReplica.start({ ...replicaOptions(config), logger });
  } catch (error) {
    if (error instanceof ConfigError) console.error(`halyard-discovery: ${error.message}`);
    else logger.error({ msgId: LogIds.startFailed, err: (error as Error).message }, 'cannot start');
    process.exitCode = 1;
    return;
  }
  replica.loaded.catch((error: Error) => {
    logger.error({ msgId: LogIds.startFailed, err: error.message }, 'cannot load the registry');
    process.exit(1);
  });
  let stopping = false;
  const stop = () => {
    // A second signal while stopping changes nothing: the first stop is already under way.
    if (stopping) return;
    stopping = true;
    void replica.stop().then(
      () => process.exit(0),
      (error: Error) => {
        logger.error({ msgId: LogIds.stopFailed, err: error.message }, 'unclean stop');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

await main();
