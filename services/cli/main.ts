/**
 * The `halyard` command (./halyard in the repository root):
 *
 *   halyard up [--single-node] [--bus-only] [--data-dir DIR] [--base-port N]
 *   halyard status | events | launcher … | affinity … | call …   (see --help of each)
 *
 * `npm start` runs `up` through deploy/local/up.sh, which first installs what is missing.
 * Exit codes: 0 ok, 1 failed, 2 usage, 3 unreachable (connect.ts).
 */
import { Command, InvalidArgumentError } from 'commander';
import { addCommands } from './commands.js';
import { ExitCodes } from './connect.js';
import { demoToken } from './demo-secrets.js';
import { cliLogger } from './log.js';
import { DEFAULT_BASE_PORT, DEFAULT_DATA_DIR, PortOffsets, up } from './up.js';

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isInteger(n) || n < 1 || n > 65_535) {
    throw new InvalidArgumentError('expected a port number (1–65535)');
  }
  return n;
}

const program = new Command('halyard')
  .description(
    'Halyard: a high-availability control plane and gRPC gateway on a replicated NATS JetStream bus',
  )
  .showHelpAfterError('(add --help for usage)')
  .showSuggestionAfterError()
  .exitOverride((err) => {
    // Usage errors exit 2; --help and --version exit 0.
    process.exit(err.exitCode === 0 ? 0 : ExitCodes.usage);
  });

program
  .command('token')
  .description("a bearer token for the local demo mesh's gateways (HS256, sub = the user)")
  .argument('<user>', 'the user id the token names (its `sub`); it never reaches the bus')
  .option('--data-dir <dir>', 'the data dir of the running halyard up', DEFAULT_DATA_DIR)
  .option('--ttl <seconds>', 'lifetime', port, 3600)
  .addHelpText(
    'after',
    `
Example:
  TOKEN=$(halyard token ada)
  halyard call 127.0.0.1:PORT demo.greeter.v1.Greeter/SayHello -H "authorization=Bearer $TOKEN" --data '{"name":"Ada"}'`,
  )
  .action(async (user: string, opts: { dataDir: string; ttl: number }) => {
    try {
      process.stdout.write(`${await demoToken(opts.dataDir, user, opts.ttl)}\n`);
    } catch (error) {
      process.stderr.write(`halyard token: ${(error as Error).message}\n`);
      process.exitCode = ExitCodes.failed;
    }
  });

program
  .command('up')
  .description(
    'run a local Halyard mesh: a 3-node NATS JetStream cluster on 127.0.0.1, provisioned with ' +
      "Halyard's stream and buckets, then one launcher with deploy/local/mesh.yaml (two discovery " +
      'replicas, two gateways, the cache, three demo greeters); stays in the foreground until Ctrl-C',
  )
  .option('--single-node', 'run one nats-server instead of three (replicas 1)', false)
  .option('--bus-only', 'only the bus: no launcher, no mesh', false)
  .option('--mesh-config <file>', 'launcher config of the mesh (default deploy/local/mesh.yaml)')
  .option('--data-dir <dir>', 'where node data, configs, logs and the lock live', DEFAULT_DATA_DIR)
  .option(
    '--base-port <port>',
    `first client port: node i listens on base+i, routes on base+${PortOffsets.cluster}+i, ` +
      `monitoring on base+${PortOffsets.monitoring}+i`,
    port,
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
  .action(
    async (opts: {
      singleNode: boolean;
      busOnly: boolean;
      meshConfig?: string;
      dataDir: string;
      basePort: number;
    }) => {
      const log = await cliLogger('halyard-up');
      process.exitCode = await up(
        {
          singleNode: opts.singleNode,
          busOnly: opts.busOnly,
          meshConfig: opts.meshConfig,
          dataDir: opts.dataDir,
          basePort: opts.basePort,
        },
        log,
      );
    },
  );

addCommands(program);

// `halyard events | head`: a closed pipe ends the command quietly.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

await program.parseAsync();
// Nothing is left to do: do not wait for stray handles (a reconnect timer of a closed client...).
process.exit(process.exitCode ?? 0);
