/** `halyard config diff A B`: what changed from version A to version B, line by line. */
import type { Command } from 'commander';
import type { Bus } from '../../../bus/index.js';
import { versionArg, versionOf } from '../config-versions.js';
import { withBus } from '../connect.js';
import { ExitCodes } from '../errors.js';
import { printJson } from '../json.js';
import { lineDiff } from '../line-diff.js';
import { type BusFlags, busOptions } from '../options.js';

export function addConfigDiffCommand(config: Command): void {
  const cmd = busOptions(
    config
      .command('diff')
      .description('a unified line diff of two versions of the mesh configuration')
      .argument('<a>', 'the older version', versionArg)
      .argument('<b>', 'the newer version', versionArg),
  );
  cmd.action(async (a: number, b: number, opts: BusFlags) =>
    withBus(cmd, (bus) => diff(bus, a, b, opts)),
  );
}

async function diff(bus: Bus, a: number, b: number, flags: BusFlags): Promise<number> {
  const store = bus.meshConfig();
  const [from, to] = [await versionOf(store, a), await versionOf(store, b)];
  const text = lineDiff(from.content, to.content, `version ${a}`, `version ${b}`);
  if (flags.json) printJson({ a, b, same: text === '', diff: text });
  else process.stdout.write(text ? `${text}\n` : `versions ${a} and ${b} are the same\n`);
  return ExitCodes.ok;
}
