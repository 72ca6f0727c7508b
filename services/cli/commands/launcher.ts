/**
 * `halyard launcher display|start|stop|restart|refresh`: the launchers' control verbs
 * over the bus, for every launcher or one host.
 */
import type { Command } from 'commander';
import { type Bus, type CommandResult, ControlError, Subjects } from '../../../bus/index.js';
import { halyard } from '../../../proto/gen/halyard.js';
import { ControlCodecsOf } from '../../launcher/control.js';
import { withBus } from '../connect.js';
import { CliError, ExitCodes } from '../errors.js';
import { messageJson, printJson } from '../json.js';
import { launcherJson, launchers, launcherTable } from '../launchers.js';
import { type BusFlags, busOptions, instanceArg } from '../options.js';

type Verb = 'display' | 'start' | 'stop' | 'restart' | 'refresh';

interface LauncherFlags extends BusFlags {
  readonly host?: string;
}

/** A rolling restart of a large component takes a while: its reply is awaited this long. */
const CONTROL_TIMEOUT_MS = 300_000;

const verbs: ReadonlyArray<readonly [Verb, string]> = [
  ['display', 'the processes each launcher runs'],
  ['start', 'start a component (or one instance); also forgets a GAVE_UP'],
  ['stop', 'stop a component (or one instance)'],
  ['restart', 'rolling restart of a component (or one instance)'],
  ['refresh', 're-read the config file and apply the difference'],
];

const takesComponent = (verb: Verb) => verb !== 'display' && verb !== 'refresh';

export function addLauncherCommand(program: Command): void {
  const launcher = program
    .command('launcher')
    .description('the launchers over the bus: every host, or one with --host');
  for (const [verb, description] of verbs) {
    const cmd = busOptions(
      launcher
        .command(verb)
        .description(description)
        .option('--host <id>', 'only this host (default: every launcher)'),
    );
    if (takesComponent(verb)) {
      cmd
        .argument('<component>', 'component name in the launcher config, e.g. greeter')
        .argument('[instance]', 'instance number (default 0: every instance)', instanceArg);
    }
    // commander passes the arguments, then the options, then the command.
    cmd.action(async (...args: unknown[]) => {
      const [component, instance] = takesComponent(verb)
        ? [args[0] as string, args[1] as number | undefined]
        : [undefined, undefined];
      const opts = args.at(-2) as LauncherFlags;
      await withBus(cmd, (bus) =>
        verb === 'display' ? display(bus, opts) : control(bus, verb, opts, component, instance),
      );
    });
  }
}

async function display(bus: Bus, flags: LauncherFlags): Promise<number> {
  const list = await launchers(bus, flags.host);
  if (flags.json) printJson(list.map(launcherJson));
  else process.stdout.write(`${launcherTable(list, Date.now())}\n`);
  return list.length === 0 ? ExitCodes.failed : ExitCodes.ok;
}

type Reply =
  | { readonly ok: true; readonly value: CommandResult }
  | { readonly ok: false; readonly error: ControlError };

async function control(
  bus: Bus,
  verb: Exclude<Verb, 'display'>,
  flags: LauncherFlags,
  component?: string,
  instance?: number,
): Promise<number> {
  const request = verb === 'refresh' ? {} : { component: component ?? '', instance: instance ?? 0 };
  const codecs = ControlCodecsOf[verb] as typeof ControlCodecsOf.start;
  // A fan-out cannot know how many launchers will answer, and a rolling restart takes a
  // while: find the hosts first (display), then ask each one and wait for its answer.
  const hosts = flags.host ? [flags.host] : (await launchers(bus, undefined)).map((l) => l.hostId);
  const replies = await Promise.all(
    hosts.map((host) =>
      bus
        .request(
          Subjects.control('launcher', host, verb),
          request as never,
          codecs,
          CONTROL_TIMEOUT_MS,
        )
        .then((value): Reply => ({ ok: true, value }))
        .catch((error: unknown): Reply => {
          if (error instanceof ControlError) return { ok: false, error };
          throw new CliError(`launcher ${host}: ${(error as Error).message}`);
        }),
    ),
  );
  if (flags.json) printJson(replies.map(replyJson));
  else process.stdout.write(replyText(hosts, replies));
  const failed = replies.length === 0 || replies.some((r) => !r.ok || !r.value.accepted);
  return failed ? ExitCodes.failed : ExitCodes.ok;
}

function replyJson(reply: Reply) {
  return reply.ok
    ? messageJson(halyard.launcher.v1.CommandResult, reply.value)
    : { error: `${reply.error.code}: ${reply.error.message}` };
}

function replyText(hosts: string[], replies: Reply[]): string {
  if (replies.length === 0) return 'no launcher answered\n';
  return replies
    .map((r, i) => {
      const host = hosts[i] ?? '?';
      return r.ok
        ? `${host}: ${r.value.accepted ? 'ok' : 'refused'} ${r.value.detail}\n`
        : `${host}: error ${r.error.code}: ${r.error.message}\n`;
    })
    .join('');
}
