/**
 * `node services/launcher/main.ts --config launcher.yaml --host-id host-a --nats nats://…`
 *
 * Runs a host's launcher until SIGTERM or SIGINT, then stops every child in reverse
 * dependency order, waits for the lifecycle events to be stored and closes the bus.
 * Settings: the YAML file, then environment variables, then flags (`--help` lists
 * them). An invalid config exits with status 2 and every problem listed. With
 * `--mesh-config bus` the components come from the mesh configuration on the bus.
 */
import { Bus, RolloutsBucket } from '../../bus/index.js';
import { startAdmin } from '../common/admin.js';
import { busOptions } from '../common/bus-settings.js';
import { configOrExit } from '../common/component-config.js';
import { componentLogger } from '../common/logger.js';
import { loadLauncherSettings } from './config.js';
import { Launcher, type MeshSource } from './launcher.js';
import { LogIds } from './log-ids.js';
import { parseMeshConfig } from './mesh-config.js';

const logger = componentLogger('halyard-launcher');

// Fail fast on a bad file, before touching the bus.
const { config, file } = await configOrExit(
  loadLauncherSettings(process.argv.slice(2)),
  logger,
  LogIds.configInvalid,
);

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
  port: config.adminPort,
  notReady: () => (launcher ? undefined : 'starting components'),
});
const bus = await Bus.connect(
  busOptions(config.bus, `launcher-${config.hostId ?? 'host'}`, logger),
);
await bus.checkProvisioned();
const mesh: MeshSource | undefined =
  config.meshConfig === 'bus'
    ? {
        versions: bus.meshConfig(),
        parse: parseMeshConfig,
        rollouts: await bus.store(RolloutsBucket),
      }
    : undefined;
childrenMayRun = true;
launcher = await Launcher.start({
  configFile: file,
  config,
  bus,
  logger,
  grpcAddress: config.grpcListen,
  mesh,
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
