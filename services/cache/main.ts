/**
 * The cache replica process.
 *
 *   node --enable-source-maps dist/services/cache/main.js --config cache.yaml [--id cache-2]
 *     [--nats nats://host:4222,…] [--grpc-port 7470] [--admin-port 7471]
 *
 * Settings: the YAML file (see config.ts), then environment variables, then flags
 * (`--help` lists them). SIGTERM or SIGINT: the replica stops taking calls, finishes
 * in-flight ones, ends Watch streams and closes the bus.
 */
import { Bus } from '../../bus/index.js';
import { busOptions } from '../common/bus-settings.js';
import { configOrExit } from '../common/component-config.js';
import { componentLogger } from '../common/logger.js';
import { loadCacheSettings } from './config.js';
import { CacheLogIds } from './log-ids.js';
import { CacheServer } from './server.js';

const logger = componentLogger('halyard-cache');

async function main(): Promise<void> {
  const config = await configOrExit(
    loadCacheSettings(process.argv.slice(2)),
    logger,
    CacheLogIds.configInvalid,
  );
  const bus = await Bus.connect(busOptions(config.bus, config.id, logger));
  const server = await CacheServer.start({ config, bus, logger });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ msgId: CacheLogIds.stopping, signal }, 'signal received');
    await server.close();
    await bus.close();
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((error: Error) => {
  logger.error({ msgId: CacheLogIds.startFailed, err: error }, 'cache replica failed');
  process.exit(1);
});
