/**
 * The `halyard` command (./halyard in the repository root):
 *
 *   halyard up [--single-node] [--bus-only] [--data-dir DIR] [--base-port N]
 *   halyard status | events | launcher … | affinity … | call … | token …   (see --help of each)
 *   halyard config apply FILE | show | diff A B | history | rollback N   (the mesh configuration)
 *   halyard rollout status | resume | abort   (how a configuration version reaches the hosts)
 *   halyard bus provision | certs <dir> --host name=address …   (a locked bus)
 *
 * `npm start` runs `up` through deploy/local/up.sh, which first installs what is missing.
 * Exit codes: 0 ok, 1 failed, 2 usage, 3 unreachable (errors.ts).
 */
import { Command } from 'commander';
import { addAffinityCommand } from './commands/affinity.js';
import { addBusCommand } from './commands/bus.js';
import { addCallCommand } from './commands/call.js';
import { addCertsCommand } from './commands/certs.js';
import { addConfigApplyCommand } from './commands/config-apply.js';
import { addConfigDiffCommand } from './commands/config-diff.js';
import { addConfigHistoryCommand } from './commands/config-history.js';
import { addConfigRollbackCommand } from './commands/config-rollback.js';
import { addConfigShowCommand } from './commands/config-show.js';
import { addConsoleCommand } from './commands/console.js';
import { addEventsCommand } from './commands/events.js';
import { addLauncherCommand } from './commands/launcher.js';
import { addRolloutCommand } from './commands/rollout.js';
import { addStatusCommand } from './commands/status.js';
import { addTokenCommand } from './commands/token.js';
import { addUpCommand } from './commands/up.js';
import { ExitCodes } from './errors.js';

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

// In the order of `halyard --help`.
addTokenCommand(program);
addUpCommand(program);
addStatusCommand(program);
addEventsCommand(program);
addLauncherCommand(program);
const config = program
  .command('config')
  .description('the mesh configuration on the bus: versions every host applies');
for (const add of [
  addConfigApplyCommand,
  addConfigShowCommand,
  addConfigDiffCommand,
  addConfigHistoryCommand,
  addConfigRollbackCommand,
]) {
  add(config);
}
addRolloutCommand(program);
addAffinityCommand(program);
addCallCommand(program);
addConsoleCommand(program);
addBusCommand(program);
addCertsCommand(program);

// `halyard events | head`: a closed pipe ends the command quietly.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

await program.parseAsync();
// Nothing is left to do: do not wait for stray handles (a reconnect timer of a closed client...).
process.exit(process.exitCode ?? 0);
