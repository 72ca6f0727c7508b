/**
 * `halyard rollout status|resume|abort`: where the rollout of a mesh configuration
 * version is (each host in turn order, and why a halted one stopped), and the
 * operator's two ways out of a halt.
 */
import { userInfo } from 'node:os';
import { type Command, InvalidArgumentError } from 'commander';
import { type Bus, type Rollout, RolloutsBucket } from '../../../bus/index.js';
import { changeRollout, HostState, RolloutState } from '../../launcher/rollouts.js';
import { withBus } from '../connect.js';
import { CliError, ExitCodes } from '../errors.js';
import { printJson } from '../json.js';
import { type BusFlags, busOptions } from '../options.js';
import { rolloutJson, rolloutRecords, rolloutText } from '../rollouts.js';

interface RolloutFlags extends BusFlags {
  readonly version?: number;
}

function versionArg(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw new InvalidArgumentError('expected a configuration version (1 or more)');
  }
  return Number(value);
}

export function addRolloutCommand(program: Command): void {
  const rollout = program
    .command('rollout')
    .description(
      'the rollout of a mesh configuration version: hosts in turn order, where it halted and why',
    );
  const versionOption = (cmd: Command) =>
    busOptions(cmd.option('--version <n>', 'the version (default: the newest)', versionArg));
  const status = versionOption(
    rollout
      .command('status')
      .description('each host: waiting, rolling (which step), applied, failed (why) or skipped')
      .addHelpText('after', '\nExit code 1 when the rollout is halted or aborted.'),
  );
  status.action(async (opts: RolloutFlags) => withBus(status, (bus) => showRollout(bus, opts)));
  const resume = versionOption(
    rollout
      .command('resume')
      .description(
        'after a halt (or an abort): the hosts that failed or were skipped try again, in turn',
      ),
  );
  resume.action(async (opts: RolloutFlags) => withBus(resume, (bus) => resumeRollout(bus, opts)));
  const abort = versionOption(
    rollout
      .command('abort')
      .description(
        'stop the rollout where it is: hosts that had not rolled keep what they run; instances already replaced keep the new version',
      ),
  );
  abort.action(async (opts: RolloutFlags) => withBus(abort, (bus) => abortRollout(bus, opts)));
}

/** The record of `--version`, else of the newest version any host has taken up. */
async function recordOf(
  bus: Bus,
  flags: RolloutFlags,
): Promise<{ record: Rollout; newest: number }> {
  const records = await rolloutRecords(bus);
  const newest = records.at(-1)?.version ?? 0;
  const record = flags.version ? records.find((r) => r.version === flags.version) : records.at(-1);
  if (!record) {
    throw new CliError(
      flags.version
        ? `no host has taken up version ${flags.version} yet`
        : 'no rollout yet: no launcher follows a mesh configuration on the bus',
    );
  }
  return { record, newest };
}

async function showRollout(bus: Bus, flags: RolloutFlags): Promise<number> {
  const latest = await bus.meshConfig().latest();
  const { record } = await recordOf(bus, flags);
  if (!flags.version && latest && latest.version > record.version && !flags.json) {
    process.stdout.write(`version ${latest.version}: no host has taken it up yet\n\n`);
  }
  if (flags.json) printJson(rolloutJson(record));
  else process.stdout.write(`${rolloutText(record, Date.now())}\n`);
  return record.state === RolloutState.ROLLING ? ExitCodes.ok : ExitCodes.failed;
}

const operator = () => {
  try {
    return userInfo().username;
  } catch {
    return 'an operator';
  }
};

async function resumeRollout(bus: Bus, flags: RolloutFlags): Promise<number> {
  const { record, newest } = await recordOf(bus, flags);
  if (record.version < newest) {
    throw new CliError(
      `version ${record.version} is superseded by version ${newest}: hosts only apply the newest`,
    );
  }
  if (record.state === RolloutState.ROLLING) {
    throw new CliError(`the rollout of version ${record.version} is not halted`);
  }
  const store = await bus.store(RolloutsBucket);
  const who = operator();
  const resumed = await changeRollout(store, record.version, (r) => ({
    ...r,
    state: RolloutState.ROLLING,
    reason: '',
    hosts: r.hosts.map((h) =>
      h.state === HostState.FAILED || h.state === HostState.SKIPPED
        ? { ...h, state: HostState.WAITING, reason: `resumed by ${who}`, updatedAtMs: Date.now() }
        : h,
    ),
  }));
  if (flags.json) printJson(rolloutJson(resumed));
  else process.stdout.write(`resumed the rollout of version ${record.version}\n`);
  return ExitCodes.ok;
}

async function abortRollout(bus: Bus, flags: RolloutFlags): Promise<number> {
  const { record } = await recordOf(bus, flags);
  if (record.state === RolloutState.ABORTED) {
    throw new CliError(`the rollout of version ${record.version} is already aborted`);
  }
  const store = await bus.store(RolloutsBucket);
  const aborted = await changeRollout(store, record.version, (r) => ({
    ...r,
    state: RolloutState.ABORTED,
    reason: `by ${operator()}`,
  }));
  if (flags.json) {
    printJson(rolloutJson(aborted));
    return ExitCodes.ok;
  }
  const notRolled = aborted.hosts.filter((h) => h.state === HostState.WAITING).map((h) => h.hostId);
  process.stdout.write(
    [
      `aborted the rollout of version ${record.version}.`,
      notRolled.length > 0
        ? `Hosts that had not rolled (${notRolled.join(', ')}) keep running what they ran.`
        : '',
      'Instances already replaced keep running version ' +
        `${record.version}; a host rolling now stops before its next step. ` +
        'To bring every host to one version, publish one (e.g. `halyard config rollback N`).',
    ]
      .filter(Boolean)
      .map((line) => `${line}\n`)
      .join(''),
  );
  return ExitCodes.ok;
}
