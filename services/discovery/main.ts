/**
 * `node dist/services/discovery/main.js` (`npm run build`): runs one discovery replica
 * until SIGTERM/SIGINT, then leaves the replica set, closes its servers and the bus, and
 * exits. Settings: the YAML file, then environment variables, then flags (`--help` lists
 * them).
 */
import { configOrExit } from '../common/component-config.js';
import { componentLogger } from '../common/logger.js';
import { loadDiscoveryConfig, replicaOptions } from './config.js';
import { LogIds } from './log-ids.js';
import { DiscoveryReplica } from './replica.js';

const logger = componentLogger('halyard-discovery');

async function main(): Promise<void> {
  const config = await configOrExit(
    loadDiscoveryConfig(process.argv.slice(2)),
    logger,
    LogIds.configInvalid,
  );
  let replica: DiscoveryReplica;
  try {
    replica = await DiscoveryReplica.start({ ...replicaOptions(config), logger });
  } catch (error) {
    logger.error({ msgId: LogIds.startFailed, err: error }, 'cannot start');
    process.exitCode = 1;
    return;
  }
  replica.loaded.catch((error: Error) => {
    logger.error({ msgId: LogIds.startFailed, err: error }, 'cannot load the registry');
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
        logger.error({ msgId: LogIds.stopFailed, err: error }, 'unclean stop');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

await main();
