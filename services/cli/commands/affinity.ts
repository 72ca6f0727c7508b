/**
 * `halyard affinity list|show|clear`: sticky routing preferences (lb.policy=user), user
 * keys (HMAC digests, never user ids) → instance.
 */
import type { Command } from 'commander';
import { AffinityBucket, type AffinityPreference, type Bus, Keys } from '../../../bus/index.js';
import { halyard } from '../../../proto/gen/halyard.js';
import { withBus } from '../connect.js';
import { CliError, ExitCodes } from '../errors.js';
import { formatAge, table } from '../format.js';
import { messageJson, printJson } from '../json.js';
import { type BusFlags, busOptions } from '../options.js';

interface AffinityFlags extends BusFlags {
  readonly service?: string;
  readonly all?: boolean;
}

export function addAffinityCommand(program: Command): void {
  const aff = program
    .command('affinity')
    .description(
      'sticky routing preferences (lb.policy=user): user keys (HMAC digests, never user ids) → instance',
    );
  const list = busOptions(
    aff
      .command('list')
      .description('every preference: service, user key, instance, age')
      .option('--service <id>', 'only this service'),
  );
  list.action(async (opts: AffinityFlags) => withBus(list, (bus) => listPreferences(bus, opts)));
  const show = busOptions(
    aff
      .command('show')
      .description("one user key's preferences (a prefix is enough)")
      .argument('<user-key>', 'the user key as listed')
      .option('--service <id>', 'only this service'),
  );
  show.action(async (key: string, opts: AffinityFlags) =>
    withBus(show, (bus) => showPreferences(bus, opts, key)),
  );
  const clear = busOptions(
    aff
      .command('clear')
      .description('forget preferences: the next call of those users is balanced afresh')
      .argument('[user-key]', 'one user key (or prefix)')
      .option('--service <id>', "only this service's")
      .option('--all', 'every preference', false),
  );
  clear.action(async (key: string | undefined, opts: AffinityFlags) =>
    withBus(clear, (bus) => clearPreferences(bus, opts, key)),
  );
}

/** The preferences of `--service` and the user key (or prefix), most recent first per service. */
async function preferences(
  bus: Bus,
  flags: AffinityFlags,
  userKey?: string,
): Promise<AffinityPreference[]> {
  const { entries } = await bus.snapshot('affinity');
  return [...entries.values()]
    .filter((p) => !flags.service || p.serviceId === flags.service)
    .filter((p) => !userKey || p.userKey.startsWith(userKey))
    .sort((a, b) => a.serviceId.localeCompare(b.serviceId) || b.lastSeenAtMs - a.lastSeenAtMs);
}

async function listPreferences(bus: Bus, flags: AffinityFlags): Promise<number> {
  print(await preferences(bus, flags), flags.json);
  return ExitCodes.ok;
}

async function showPreferences(bus: Bus, flags: AffinityFlags, userKey: string): Promise<number> {
  const list = await preferences(bus, flags, userKey);
  if (list.length === 0) throw new CliError(`no preference for user key ${userKey}`);
  print(list, flags.json);
  return ExitCodes.ok;
}

async function clearPreferences(bus: Bus, flags: AffinityFlags, userKey?: string): Promise<number> {
  if (!userKey && !flags.service && !flags.all) {
    throw new CliError(
      'affinity clear needs a user key, --service S or --all (what to forget)',
      ExitCodes.usage,
    );
  }
  const list = await preferences(bus, flags, userKey);
  const store = await bus.store(AffinityBucket);
  for (const p of list) await store.remove(Keys.affinity(p.serviceId, p.userKey));
  if (flags.json) printJson({ cleared: list.length });
  else process.stdout.write(`cleared ${list.length} preference(s)\n`);
  return ExitCodes.ok;
}

function print(list: AffinityPreference[], asJson: boolean): void {
  if (asJson) {
    printJson(list.map((p) => messageJson(halyard.affinity.v1.AffinityPreference, p)));
    return;
  }
  const now = Date.now();
  process.stdout.write(
    list.length === 0
      ? 'no user preferences (services with lb.policy=user record them on first call)\n'
      : `${table(
          ['SERVICE', 'USER KEY', 'INSTANCE', 'AGE', 'LAST SEEN', 'GATEWAY'],
          list.map((p) => [
            p.serviceId,
            p.userKey,
            p.instanceId,
            formatAge(now - p.createdAtMs),
            formatAge(now - p.lastSeenAtMs),
            p.gatewayId || '-',
          ]),
          '',
        )}\n`,
  );
}
