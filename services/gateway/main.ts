/**
 * The gateway process: `node --import tsx services/gateway/main.ts [--config gateway.yaml]`.
 * Settings come from the YAML file, then HALYARD_GATEWAY_* environment variables, then
 * flags. SIGTERM/SIGINT stop it gracefully: GOAWAY, calls in flight finish within
 * `stopTimeoutSeconds`, GATEWAY_STOPPING is published, the bus is closed.
 */
import { Command } from 'commander';
import { pino } from 'pino';
import { Bus } from '../../bus/index.js';
import { ConfigError, loadYamlConfig, validateConfig } from '../common/config.js';
import { type GatewayConfig, gatewayConfigSchema } from './config.js';
import { Gateway } from './gateway.js';
import { GatewayLogIds } from './log-ids.js';

interface Flags {
  config?: string;
  id?: string;
  nats?: string;
  listen?: string;
  admin?: string;
  tlsCert?: string;
  tlsKey?: string;
}

const program = new Command('halyard-gateway')
  .description('Halyard gRPC gateway replica')
  .option('-c, --config <file>', 'YAML config file (env HALYARD_GATEWAY_CONFIG)')
  .option('--id <id>', 'gateway replica id (env HALYARD_GATEWAY_ID)')
  .option('--nats <urls>', 'comma-separated NATS URLs (env HALYARD_NATS_SERVERS)')
  .option('--listen <host:port>', 'gRPC listen address (env HALYARD_GATEWAY_LISTEN)')
  .option('--admin <host:port>', 'admin HTTP address (env HALYARD_GATEWAY_ADMIN)')
  .option('--tls-cert <file>', 'client-facing TLS certificate (PEM)')
  .option('--tls-key <file>', 'client-facing TLS key (PEM)');

function hostPort(value: string | undefined): { host: string; port: number } | undefined {
  if (value === undefined) return undefined;
  const colon = value.lastIndexOf(':');
  return { host: value.slice(0, colon) || '0.0.0.0', port: Number(value.slice(colon + 1)) };
}

async function loadConfig(flags: Flags): Promise<GatewayConfig> {
  const env = process.env;
  const file = flags.config ?? env.HALYARD_GATEWAY_CONFIG;
  const base: Record<string, unknown> = file
    ? { ...(await loadYamlConfig(gatewayConfigSchema.partial(), file)) }
    : {};
  const id = flags.id ?? env.HALYARD_GATEWAY_ID;
  const nats = flags.nats ?? env.HALYARD_NATS_SERVERS;
  const listen = hostPort(flags.listen ?? env.HALYARD_GATEWAY_LISTEN);
  const admin = hostPort(flags.admin ?? env.HALYARD_GATEWAY_ADMIN);
  if (id) base.id = id;
  if (nats) base.nats = { servers: nats.split(',') };
  if (listen) base.listen = listen;
  if (admin) base.admin = admin;
  const meshSecret = env.HALYARD_GATEWAY_MESH_SECRET;
  const jwtSecret = env.HALYARD_GATEWAY_JWT_SECRET;
  if (meshSecret || jwtSecret) {
    const affinity = (base.affinity ?? {}) as {
      meshSecret?: string;
      jwt?: Record<string, unknown>;
    };
    base.affinity = {
      ...affinity,
      ...(meshSecret ? { meshSecret } : {}),
      jwt: { ...affinity.jwt, ...(jwtSecret ? { hs256Secret: jwtSecret } : {}) },
    };
  }
  if (flags.tlsCert || flags.tlsKey) base.tls = { certFile: flags.tlsCert, keyFile: flags.tlsKey };
  return validateConfig(gatewayConfigSchema, base, file ?? '(flags and environment)');
}

async function main(): Promise<void> {
  const flags = program.parse().opts<Flags>();
  const logger = pino({ name: 'halyard-gateway', level: process.env.HALYARD_LOG_LEVEL ?? 'info' });
  let config: GatewayConfig;
  try {
    config = await loadConfig(flags);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    logger.error({ msgId: GatewayLogIds.configInvalid, problems: error.problems }, error.message);
    process.exit(2);
  }
  const bus = await Bus.connect({
    servers: config.nats.servers,
    name: `gateway-${config.id}`,
    logger,
  });
  await bus.provision();
  const gateway = await Gateway.start(config, bus, logger);
  const stop = async () => {
    await gateway.stop();
    await bus.close();
    process.exit(0);
  };
  // A second signal while stopping is ignored: the first one's timeout bounds the stop.
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: Error) => {
  pino({ name: 'halyard-gateway' }).error(
    { msgId: GatewayLogIds.fatal, err: error.message },
    'gateway failed to start',
  );
  process.exit(1);
});
