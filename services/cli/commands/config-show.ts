/** `halyard config show [--version N]`: a version of the mesh configuration, as applied. */
import type { Command } from 'commander';
import type { Bus } from '../../../bus/index.js';
import { latestOf, versionArg, versionJson, versionOf } from '../config-versions.js';
import { withBus } from '../connect.js';
import { ExitCodes } from '../errors.js';
import { printJson } from '../json.js';
import { type BusFlags, busOptions } from '../options.js';

interface ShowFlags extends BusFlags {
  readonly version?: number;
}

export function addConfigShowCommand(config: Command): void {
  const cmd = busOptions(
    config
      .command('show')
      .description('a version of the mesh configuration: its YAML exactly as applied')
      .option('--version <n>', 'this version (default: the latest)', versionArg),
  );
  cmd.action(async (opts: ShowFlags) => withBus(cmd, (bus) => show(bus, opts)));
}

async function show(bus: Bus, flags: ShowFlags): Promise<number> {
  const store = bus.meshConfig();
  const v = flags.version ? await versionOf(store, flags.version) : await latestOf(store);
  if (flags.json) {
    printJson(versionJson(v, true));
  } else {
    // The header goes to stderr: `config show > file` is the content exactly as applied,
    // so applying the file again changes nothing.
    process.stderr.write(
      `# version ${v.version} (based on ${v.basedOn}) by ${v.author} at ${v.publishedAt.toISOString()}: ${v.summary}\n`,
    );
    process.stdout.write(v.content.endsWith('\n') ? v.content : `${v.content}\n`);
  }
  return ExitCodes.ok;
}
