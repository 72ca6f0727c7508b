/** `halyard token <user>`: a bearer token the local demo mesh's gateways accept. */
import type { Command } from 'commander';
import { demoToken } from '../demo-secrets.js';
import { CliError, ExitCodes, reportError } from '../errors.js';
import { secondsArg } from '../options.js';
import { DEFAULT_DATA_DIR } from '../up/lock.js';

/** The gateways' default `affinity.jwt.maxLifetimeSeconds`: a longer token is refused. */
const MAX_TTL_SECONDS = 86_400;

export function addTokenCommand(program: Command): void {
  program
    .command('token')
    .description("a bearer token for the local demo mesh's gateways (HS256, sub = the user)")
    .argument('<user>', 'the user id the token names (its `sub`); it never reaches the bus')
    .option('--data-dir <dir>', 'the data dir of the running halyard up', DEFAULT_DATA_DIR)
    .option('--ttl <seconds>', `lifetime, at most ${MAX_TTL_SECONDS}`, secondsArg, 3600)
    .addHelpText(
      'after',
      `
Example:
  TOKEN=$(halyard token ada)
  halyard call 127.0.0.1:PORT demo.greeter.v1.Greeter/SayHello -H "authorization=Bearer $TOKEN" --data '{"name":"Ada"}'`,
    )
    .action(async (user: string, opts: { dataDir: string; ttl: number }) => {
      try {
        if (opts.ttl > MAX_TTL_SECONDS) {
          throw new CliError(
            `--ttl ${opts.ttl}: the gateways accept tokens living at most ${MAX_TTL_SECONDS} s`,
            ExitCodes.usage,
          );
        }
        process.stdout.write(`${await demoToken(opts.dataDir, user, opts.ttl)}\n`);
      } catch (error) {
        reportError(error);
      }
    });
}
