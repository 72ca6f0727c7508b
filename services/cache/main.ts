/**
 * The cache replica process.
 *
 *   node --import tsx services/cache/main.ts --config cache.yaml [--id cache-2]
 *     [--nats nats://host:4222,…] [--grpc-port 7470] [--admin-port 7471]
 *
 * Flags override the YAML file (see config.ts). SIGTERM or SIGINT: the replica stops
 * taking calls, finishes in-flight ones, ends Watch streams and closes the bus.
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Bus } from '../../bus/index.js';
import { ConfigError, validateConfig } from '../common/config.js';
import { type CacheConfig, cacheConfig, loadCacheConfig } from './config.js';
import { CacheLogIds } from './log-ids.js';
import { CacheServer } from './server.js';

const logger = pino({ name: 'halyard-cache', level: process.env.HALYARD_LOG_LEVEL ?? 'info' });

async function configFromArgs(): Promise<CacheConfig> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', short: 'c' },
      id: { type: 'string' },
      nats: { type: 'string' },
      'grpc-port': { type: 'string' },
      'admin-port': { type: 'string' },
    },
  });
  const base = values.config
    ? await loadCacheConfig(values.config)
    : validateConfig(cacheConfig, {}, '(defaults)');
  const overrides: Record<string, unknown> = { ...base };
  if (values.id) overrides.id = values.id;
  if (values.nats) overrides.bus = { ...base.bus, servers: values.nats.split(',') };
  if (values['grpc-port']) overrides.grpc = { ...base.grpc, port: Number(values['grpc-port']) };
  if (values['admin-port']) {
    overrides.admin = { ...base.admin, port: Number(values['admin-port']) };
  }
  return validateConfig(cacheConfig, overrides, `${values.config ?? '(defaults)'} + flags`);
}

async function main(): Promise<void> {
  let config: CacheConfig;
  try {
    config = await configFromArgs();
  } catch (error) {
    if (!(error instanceof ConfigError) && !(error instanceof TypeError)) throw error;
    logger.error({ msgId: CacheLogIds.configInvalid, err: error.message }, 'invalid configuration');
    process.exitCode = 2;
    return;
  }
  const bus = await Bus.connect({
    servers: config.bus.servers,
    name: config.id,
    logger,
    ...(config.bus.replicas ? { replicas: config.bus.replicas } : {}),
  });
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
  logger.error({ msgId: CacheLogIds.startFailed, err: error.message }, 'cache replica failed');
  process.exit(1);
});
