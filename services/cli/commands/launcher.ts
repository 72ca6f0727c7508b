/**
 * `halyard launcher display|start|stop|restart|refresh`: the launchers' control verbs
 * over the bus, for every launcher or one host. A restart rolls host by host.
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
  // A fan-out cannot know how many launchers will answer, and a rolling restart takes a
  // while: find the hosts first (display), then ask each one and wait for its answer.
  const hosts = flags.host ? [flags.host] : await hostsFor(bus, verb, component);
  const ask = (host: string) => askLauncher(bus, host, verb, request);
  // A restart goes host by host, each next only once the last one's instances are back
  // and ready (the launcher's own restart is rolling), and stops at the first failure:
  // restarting every host at once would take a component down on all of them together.
  const replies: Reply[] = [];
  if (verb === 'restart') {
    for (const host of hosts) {
      const reply = await ask(host);
      replies.push(reply);
      if (!reply.ok || !reply.value.accepted) break;
    }
  } else {
    replies.push(...(await Promise.all(hosts.map(ask))));
  }
  if (flags.json) printJson(replies.map(replyJson));
  else process.stdout.write(replyText(hosts, replies));
  const failed =
    replies.length < hosts.length ||
    replies.length === 0 ||
    replies.some((r) => !r.ok || !r.value.accepted);
  return failed ? ExitCodes.failed : ExitCodes.ok;
}

/** Every launcher for `refresh`; for a component, the launchers that run it. */
async function hostsFor(bus: Bus, verb: Verb, component?: string): Promise<string[]> {
  const list = await launchers(bus, undefined);
  const runs = (l: (typeof list)[number]) => l.processes.some((p) => p.component === component);
  // `start` may name a component a host runs none of yet (scaled to 0, or given up).
  return (verb === 'refresh' || verb === 'start' ? list : list.filter(runs)).map((l) => l.hostId);
}

async function askLauncher(
  bus: Bus,
  host: string,
  verb: Exclude<Verb, 'display'>,
  request: object,
): Promise<Reply> {
  const codecs = ControlCodecsOf[verb] as typeof ControlCodecsOf.start;
  try {
    const value = await bus.request(
      Subjects.control('launcher', host, verb),
      request as never,
      codecs,
      CONTROL_TIMEOUT_MS,
    );
    return { ok: true, value };
  } catch (error) {
    if (error instanceof ControlError) return { ok: false, error };
    throw new CliError(`launcher ${host}: ${(error as Error).message}`, ExitCodes.failed, {
      cause: error,
    });
  }
}

function replyJson(reply: Reply) {
  return reply.ok
    ? messageJson(halyard.launcher.v1.CommandResult, reply.value)
    : { error: `${reply.error.code}: ${reply.error.message}` };
}

function replyText(hosts: string[], replies: Reply[]): string {
  if (hosts.length === 0) return 'no launcher answered\n';
  const answered = replies.map((r, i) => {
    const host = hosts[i] ?? '?';
    return r.ok
      ? `${host}: ${r.value.accepted ? 'ok' : 'refused'} ${r.value.detail}\n`
      : `${host}: error ${r.error.code}: ${r.error.message}\n`;
  });
  const skipped = hosts.slice(replies.length);
  const halted =
    skipped.length > 0
      ? [`halted: not asked, after the failure above: ${skipped.join(', ')}\n`]
      : [];
  return [...answered, ...halted].join('');
}
