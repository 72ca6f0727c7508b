/**
 * `halyard certs <dir> --host n1=10.0.0.1 …`: the CA, host and role certificates, role
 * nkeys and per-host config files of a locked bus (see ../certs-bundle.ts for the layout).
 */
import { type Command, InvalidArgumentError } from 'commander';
import { type BusHost, makeBusBundle } from '../certs-bundle.js';
import { reportError } from '../errors.js';

function hostArg(value: string, previous: BusHost[] = []): BusHost[] {
  const m = /^([A-Za-z0-9_-]{1,64})=([A-Za-z0-9.:-]+)$/.exec(value);
  if (!m) throw new InvalidArgumentError('expected NAME=ADDRESS, e.g. n1=10.0.0.1');
  return [...previous, { name: m[1] as string, address: m[2] as string }];
}

export function addCertsCommand(program: Command): void {
  program
    .command('certs')
    .description('make the CA, certificates, role nkeys and per-host configs of a locked bus')
    .argument('<dir>', 'a new directory to write them to (files 0600, directories 0700)')
    .requiredOption(
      '--host <name=address...>',
      'a bus server: its name and address (repeat)',
      hostArg,
    )
    .option(
      '--launcher-host <id...>',
      'a launcher host id, given its own role (default: the --host names)',
    )
    .option(
      '--install-dir <dir>',
      'where each host directory will live on its host',
      '/etc/halyard/nats',
    )
    .option('--store-dir <dir>', "the servers' JetStream storage", '/var/lib/halyard/nats')
    .addHelpText(
      'after',
      `
Example:
  halyard certs ./bus --host n1=10.0.0.1 --host n2=10.0.0.2 --host n3=10.0.0.3
  # then copy ./bus/hosts/n1 to n1:/etc/halyard/nats and run nats-server -c /etc/halyard/nats/nats.conf;
  # give each component the files of its role: ./bus/roles/<role>/bus.env`,
    )
    .action(
      async (
        dir: string,
        opts: { host: BusHost[]; launcherHost?: string[]; installDir: string; storeDir: string },
      ) => {
        try {
          await makeBusBundle({
            dir,
            hosts: opts.host,
            installDir: opts.installDir,
            storeDir: opts.storeDir,
            ...(opts.launcherHost ? { launcherHosts: opts.launcherHost } : {}),
          });
          process.stdout.write(`bus certificates, nkeys and host configs written to ${dir}\n`);
        } catch (error) {
          reportError(error);
        }
      },
    );
}
