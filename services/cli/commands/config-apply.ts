/**
 * `halyard config apply FILE [--based-on N]`: validates a whole mesh configuration and
 * publishes it as the next version, by compare-and-set on the version it was based on
 * (the latest when read, or N): of two operators applying at once one wins, and the
 * other is told which version beat it and by whom. Nothing is published when the file
 * is invalid (every problem named by field and line) or equals the latest version
 * (unless `--force`: then every host also restarts, one instance at a time, what the
 * version does not change).
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { Bus } from '../../../bus/index.js';
import type { MeshConfig } from '../../launcher/mesh-config.js';
import { publishOn, summaryOf, validated, versionArg, versionJson } from '../config-versions.js';
import { withBus } from '../connect.js';
import { CliError, ExitCodes, reportError } from '../errors.js';
import { printJson } from '../json.js';
import { type BusFlags, busOptions } from '../options.js';

interface ApplyFlags extends BusFlags {
  readonly basedOn?: number;
  readonly force: boolean;
}

export function addConfigApplyCommand(config: Command): void {
  const cmd = busOptions(
    config
      .command('apply')
      .description('validate a mesh configuration and publish it as the next version')
      .argument('<file>', 'the mesh configuration (YAML: components, rollout, recovery)')
      .option(
        '--based-on <version>',
        'publish only if the latest version is still this one (default: the latest when read)',
        versionArg,
      )
      .option(
        '--force',
        'also restart, host by host and one instance at a time, the instances whose process it does not change (publishes even an unchanged file)',
        false,
      ),
  );
  cmd.action(async (file: string, opts: ApplyFlags) => {
    let text: string;
    let next: MeshConfig;
    try {
      text = await readFile(file, 'utf8');
      // Checked before the bus is reached: an invalid file never gets near it.
      next = validated(text, file);
    } catch (error) {
      reportError(
        error instanceof CliError
          ? error
          : new CliError(`cannot read ${file}: ${(error as Error).message}`),
      );
      return;
    }
    await withBus(cmd, (bus) => apply(bus, file, text, next, opts));
  });
}

async function apply(
  bus: Bus,
  file: string,
  text: string,
  next: MeshConfig,
  flags: ApplyFlags,
): Promise<number> {
  const store = bus.meshConfig();
  const latest = await store.latest();
  const basedOn = flags.basedOn ?? latest?.version ?? 0;
  if (latest && latest.version === basedOn && latest.content === text && !flags.force) {
    if (flags.json) printJson({ published: false, latest: versionJson(latest, false) });
    else
      process.stdout.write(
        `unchanged: version ${latest.version} already holds ${file}; nothing published\n`,
      );
    return ExitCodes.ok;
  }
  const base =
    latest?.version === basedOn ? latest : basedOn > 0 ? await store.get(basedOn) : undefined;
  const published = await publishOn(store, {
    basedOn,
    content: text,
    summary: flags.force
      ? `${summaryOf(base, next)}; --force: every instance restarts`
      : summaryOf(base, next),
    restartUnchanged: flags.force,
  });
  if (flags.json) printJson({ published: true, version: versionJson(published, false) });
  else {
    process.stdout.write(
      `published version ${published.version} (based on ${published.basedOn}): ${published.summary}\n`,
    );
  }
  return ExitCodes.ok;
}
