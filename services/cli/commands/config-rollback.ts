/**
 * `halyard config rollback N`: publishes version N's content as the next version (the
 * history only grows), by compare-and-set on the latest.
 */
import type { Command } from 'commander';
import type { Bus } from '../../../bus/index.js';
import {
  latestOf,
  publishOn,
  summaryOf,
  validated,
  versionArg,
  versionJson,
  versionOf,
} from '../config-versions.js';
import { withBus } from '../connect.js';
import { ExitCodes } from '../errors.js';
import { printJson } from '../json.js';
import { type BusFlags, busOptions } from '../options.js';

export function addConfigRollbackCommand(config: Command): void {
  const cmd = busOptions(
    config
      .command('rollback')
      .description("publish an earlier version's content as the next version")
      .argument('<version>', 'the version to go back to', versionArg),
  );
  cmd.action(async (version: number, opts: BusFlags) =>
    withBus(cmd, (bus) => rollback(bus, version, opts)),
  );
}

async function rollback(bus: Bus, version: number, flags: BusFlags): Promise<number> {
  const store = bus.meshConfig();
  const target = await versionOf(store, version);
  const latest = await latestOf(store);
  if (latest.content === target.content) {
    if (flags.json) printJson({ published: false, latest: versionJson(latest, false) });
    else {
      process.stdout.write(
        `unchanged: the latest version ${latest.version} already holds version ${version}'s content; nothing published\n`,
      );
    }
    return ExitCodes.ok;
  }
  // What was valid then may not be now (a newer Halyard, a stricter rule): checked again.
  const config = validated(target.content, `version ${version}`);
  const published = await publishOn(store, {
    basedOn: latest.version,
    content: target.content,
    summary: `rollback to ${version}: ${summaryOf(latest, config)}`,
  });
  if (flags.json) printJson({ published: true, version: versionJson(published, false) });
  else {
    process.stdout.write(
      `published version ${published.version} (based on ${published.basedOn}): ${published.summary}\n`,
    );
  }
  return ExitCodes.ok;
}
