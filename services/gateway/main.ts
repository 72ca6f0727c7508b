/**
 * The gateway process: `node --import tsx services/gateway/main.ts [--config gateway.yaml]`.
 * Settings come from the YAML file, then environment variables, then flags (`--help`
 * lists them). SIGTERM/SIGINT stop it gracefully: GOAWAY, calls in flight finish within
 * `stopTimeoutSeconds`, GATEWAY_STOPPING is published, the bus is closed.
 */
import { Bus } from '../../bus/index.js';
import { busOptions } from '../common/bus-settings.js';
import { configOrExit } from '../common/component-config.js';
import { componentLogger } from '../common/logger.js';
import { loadGatewayConfig } from './config.js';
import { Gateway } from './gateway.js';
import { GatewayLogIds } from './log-ids.js';

const logger = componentLogger('halyard-gateway');

async function main(): Promise<void> {
  const config = await configOrExit(
    loadGatewayConfig(process.argv.slice(2)),
    logger,
    GatewayLogIds.configInvalid,
  );
  const bus = await Bus.connect(busOptions(config.bus, `gateway-${config.id}`, logger));
  await bus.checkProvisioned();
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
  logger.error({ msgId: GatewayLogIds.fatal, err: error }, 'gateway failed to start');
  process.exit(1);
});
