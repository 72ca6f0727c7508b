/** `halyard up`: the local mesh in the foreground until Ctrl-C (see ../up.ts). */
import type { Command } from 'commander';
import { cliLogger } from '../log.js';
import { portArg } from '../options.js';
import { DEFAULT_DATA_DIR } from '../up/lock.js';
import { DEFAULT_BASE_PORT, PortOffsets } from '../up/ports.js';
import { up } from '../up.js';

interface UpFlags {
  readonly singleNode: boolean;
  readonly busOnly: boolean;
  readonly insecure: boolean;
  readonly meshConfig?: string;
  readonly dataDir: string;
  readonly basePort: number;
}

export function addUpCommand(program: Command): void {
  program
    .command('up')
    .description(
      'run a local Halyard mesh: a 3-node NATS JetStream cluster on 127.0.0.1, provisioned with ' +
        "Halyard's stream and buckets, then one launcher with deploy/local/mesh.yaml (two discovery " +
        'replicas, two gateways, the cache, three demo greeters); stays in the foreground until Ctrl-C',
    )
    .option('--single-node', 'run one nats-server instead of three (replicas 1)', false)
    .option('--bus-only', 'only the bus: no launcher, no mesh', false)
    .option(
      '--insecure',
      'run the bus open (no TLS, no credentials) for debugging; by default it is locked',
      false,
    )
    .option('--mesh-config <file>', 'launcher config of the mesh (default deploy/local/mesh.yaml)')
    .option(
      '--data-dir <dir>',
      'where node data, configs, logs and the lock live',
      DEFAULT_DATA_DIR,
    )
    .option(
      '--base-port <port>',
      `first client port: node i listens on base+i, routes on base+${PortOffsets.cluster}+i, ` +
        `monitoring on base+${PortOffsets.monitoring}+i`,
      portArg,
      DEFAULT_BASE_PORT,
    )
    .addHelpText(
      'after',
      `
Admin ports of the mesh start at base+5000 (9222 by default); gRPC ports are free ports
the launcher picks: up prints them all once the mesh is ready. Data survives a restart: run up again with the same --data-dir. One up per data dir;
a second one says which is running and exits 1. Logs (pino, message ids HALX…) go to
stderr; HALYARD_LOG_LEVEL and HALYARD_LOG_FORMAT (json | pretty) adjust them.

Examples:
  halyard up                                   # nats://127.0.0.1:4222-4224, data in ./.halyard
  halyard up --single-node --data-dir /tmp/hal # one server, replicas 1
  halyard up --base-port 14222                 # ports 14222-14224, 16222-16224, 18222-18224`,
    )
    .action(async (opts: UpFlags) => {
      const log = await cliLogger('halyard-up');
      process.exitCode = await up(opts, log);
    });
}
