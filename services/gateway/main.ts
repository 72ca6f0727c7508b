/**
 * The gateway process: `node --import tsx services/gateway/main.ts [--config gateway.yaml]`.
 * Settings come from the YAML file, then environment variables, then flags (`--help`
 * lists them). SIGTERM/SIGINT stop it gracefully: GOAWAY, calls in flight finish within
 * `stopTimeoutSeconds`, GATEWAY_STOPPING is published, the bus is closed.
 *
 * With `workers` above 1 this process is the primary of a gateway of several processes
 * (workers.ts), and the workers it forks run this same file.
 */
import { Bus } from '../../bus/index.js';
import { busOptions } from '../common/bus-settings.js';
import { configOrExit } from '../common/component-config.js';
import { componentLogger } from '../common/logger.js';
import { type GatewayConfig, loadGatewayConfig } from './config.js';
import { GatewayLogIds } from './log-ids.js';
import { GatewayPrimary, reportWorkerReady, workerCount, workerNumber } from './workers.js';

const worker = workerNumber();
const logger =
  worker === undefined
    ? componentLogger('halyard-gateway')
    : componentLogger('halyard-gateway').child({ worker });

async function main(): Promise<void> {
  const config = await configOrExit(
    loadGatewayConfig(process.argv.slice(2)),
    logger,
    GatewayLogIds.configInvalid,
  );
  const workers = workerCount(config.workers);
  if (worker === undefined && workers > 1) {
    const primary = await GatewayPrimary.start(config, workers, logger);
    onStopSignal(async () => {
      await primary.stop();
      process.exit(0);
    });
    return;
  }
  await serve(config);
}

/** A gateway in this process: the whole gateway, or one worker of it. */
async function serve(config: GatewayConfig): Promise<void> {
  // Loaded here: a primary routes nothing and does without the gateway's modules.
  const { Gateway } = await import('./gateway.js');
  const bus = await Bus.connect(
    busOptions(
      config.bus,
      worker === undefined ? `gateway-${config.id}` : `gateway-${config.id}-${worker}`,
      logger,
    ),
  );
  await bus.checkProvisioned();
  const gateway = await Gateway.start(config, bus, logger, { worker });
  let stopping = false;
  onStopSignal(async () => {
    stopping = true;
    await gateway.stop();
    await bus.close();
    process.exit(0);
  });
  if (worker === undefined) return;
  try {
    await gateway.ready();
  } catch (error) {
    // Stopped while loading: the stop ends the process.
    if (stopping) return;
    throw error;
  }
  reportWorkerReady(worker, gateway.port);
}

function onStopSignal(stop: () => Promise<void>): void {
  // A second signal while stopping is ignored: the first one's timeout bounds the stop.
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: Error) => {
  logger.error({ msgId: GatewayLogIds.fatal, err: error }, 'gateway failed to start');
  process.exit(1);
});
