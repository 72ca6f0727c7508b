/**
 * `halyard bus provision`: creates (or checks) every stream and bucket, as the bus's
 * admin role; the only step that needs stream management rights.
 */
import type { Command } from 'commander';
import { withBus } from '../connect.js';
import { busOptions } from '../options.js';

export function addBusCommand(program: Command): void {
  const bus = program.command('bus').description("the bus's own administration");
  busOptions(
    bus
      .command('provision')
      .description('create or check every stream and bucket (run once per bus, as admin)')
      .option(
        '--replicas <n>',
        'replicas of each stream (default: 3 on a cluster, else 1)',
        Number,
      ),
  )
    .addHelpText(
      'after',
      `
Connects with the admin role's files, e.g. for a bus made by \`halyard certs ./bus …\`:
  set -a; . ./bus/roles/admin/bus.env; set +a
  halyard bus provision --servers nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222`,
    )
    .action(async (opts: { replicas?: number }, cmd: Command) =>
      withBus(cmd, async (connected) => {
        await connected.provision(opts.replicas ? { replicas: opts.replicas } : {});
        process.stdout.write('bus streams and buckets ready\n');
        return undefined;
      }),
    );
}
