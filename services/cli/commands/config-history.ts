/** `halyard config history`: every version of the mesh configuration: who, when, what changed. */
import type { Command } from 'commander';
import type { Bus } from '../../../bus/index.js';
import { versionJson } from '../config-versions.js';
import { withBus } from '../connect.js';
import { ExitCodes } from '../errors.js';
import { table } from '../format.js';
import { printJson } from '../json.js';
import { type BusFlags, busOptions } from '../options.js';

export function addConfigHistoryCommand(config: Command): void {
  const cmd = busOptions(
    config
      .command('history')
      .description('every version of the mesh configuration, oldest first: who, when, summary'),
  );
  cmd.action(async (opts: BusFlags) => withBus(cmd, (bus) => history(bus, opts)));
}

async function history(bus: Bus, flags: BusFlags): Promise<number> {
  const versions = await bus.meshConfig().history();
  if (flags.json) {
    printJson(versions.map((v) => versionJson(v, false)));
  } else if (versions.length === 0) {
    process.stdout.write('no mesh configuration published yet\n');
  } else {
    const rows = versions.map((v) => [
      String(v.version),
      v.publishedAt.toISOString(),
      v.author,
      v.summary,
    ]);
    process.stdout.write(`${table(['VERSION', 'PUBLISHED', 'BY', 'SUMMARY'], rows)}\n`);
  }
  return ExitCodes.ok;
}
