/**
 * `halyard events`: decoded events of the HALYARD_EVENTS stream, one line each; a
 * replay of what is stored, or `--follow` for new ones until Ctrl-C.
 */
import { type Command, Option } from 'commander';
import {
  type Bus,
  type BusEvent,
  type DeliveryMeta,
  EVENTS_STREAM,
  type EventSource,
  EventSources,
  type StartFrom,
} from '../../../bus/index.js';
import { halyard } from '../../../proto/gen/halyard.js';
import { withBus } from '../connect.js';
import { CliError, ExitCodes, reportError } from '../errors.js';
import { formatAge, nameOf } from '../format.js';
import { type JsonObject, type MessageClass, messageJson, printJsonLine } from '../json.js';
import { type BusFlags, busOptions, durationArg, seqArg } from '../options.js';

const { InstanceStatus, DiscoveryEvent } = halyard.discovery.v1;
const { LifecycleEvent } = halyard.launcher.v1;
const { GatewayEvent } = halyard.gateway.v1;
/** `--follow` without a start: the recent past first, for context. */
const FOLLOW_LOOKBACK_MS = 10 * 60_000;
/** Without --follow: how often to check whether the stream has been read to its end. */
const IDLE_CHECK_MS = 1000;

interface EventsFlags extends BusFlags {
  readonly follow: boolean;
  readonly since?: number;
  readonly fromSeq?: number;
  readonly type?: EventSource;
  readonly service?: string;
}

export function addEventsCommand(program: Command): void {
  busOptions(
    program
      .command('events')
      .description('decoded events from the HALYARD_EVENTS stream, one line each')
      .option('-f, --follow', 'keep printing new events until Ctrl-C', false)
      .option('--since <duration>', 'from this long ago: 90s, 10m, 2h, 1d', durationArg)
      .option('--from-seq <n>', 'from this stream sequence', seqArg)
      .addOption(new Option('--type <type>', 'only this kind of event').choices([...EventSources]))
      .option('--service <id>', 'only events of this service / launcher component'),
  )
    .addHelpText(
      'after',
      '\nWithout --since/--from-seq: every stored event (with --follow: the last 10 minutes, then new ones).\n' +
        'Examples:\n  halyard events --type lifecycle --since 10m\n  halyard events --follow --service greeter',
    )
    .action(async (opts: EventsFlags, cmd: Command) => {
      if (opts.since !== undefined && opts.fromSeq !== undefined) {
        reportError(new CliError('--since and --from-seq exclude each other', ExitCodes.usage));
        return;
      }
      await withBus(cmd, (bus) => events(bus, opts));
    });
}

/** An event in a line for humans: who did what, and the details. */
function describeEvent(delivery: BusEvent): { who: string; what: string; detail: string } {
  switch (delivery.source) {
    case 'lifecycle': {
      const e = delivery.event;
      const parts = [
        e.pid ? `pid ${e.pid}` : '',
        e.port ? `port ${e.port}` : '',
        e.signal ? `signal ${e.signal}` : '',
        e.kind === LifecycleEvent.Kind.EXITED && !e.signal ? `code ${e.exitCode}` : '',
        e.delayMs ? `in ${formatAge(e.delayMs)}` : '',
        e.attempt ? `attempt ${e.attempt}` : '',
        e.reason,
      ];
      return {
        who: `${e.hostId}/${e.component}#${e.instance}`,
        what: nameOf(LifecycleEvent.Kind, e.kind),
        detail: parts.filter(Boolean).join(' · '),
      };
    }
    case 'gateway': {
      const e = delivery.event;
      const target = e.serviceId ? `${e.serviceId}/${e.instanceId}` : '';
      const parts = [
        target,
        e.toInstanceId ? `→ ${e.toInstanceId}` : '',
        e.userKey ? `user key ${e.userKey.slice(0, 10)}…` : '',
        e.ejectionSeconds ? `for ${e.ejectionSeconds}s` : '',
        e.reason,
      ];
      return {
        who: e.gatewayId,
        what: nameOf(GatewayEvent.Kind, e.kind),
        detail: parts.filter(Boolean).join(' · '),
      };
    }
    case 'discovery': {
      const e = delivery.event;
      const parts = [
        e.serviceId ? `${e.serviceId}/${e.instanceId}` : '',
        e.status ? nameOf(InstanceStatus, e.status) : '',
        e.detail,
      ];
      return {
        who: e.replicaId,
        what: nameOf(DiscoveryEvent.Kind, e.kind),
        detail: parts.filter(Boolean).join(' · '),
      };
    }
  }
}

const messageOf: { readonly [S in EventSource]: MessageClass } = {
  lifecycle: LifecycleEvent,
  gateway: GatewayEvent,
  discovery: DiscoveryEvent,
};

/** An event in `--json` output: where it is in the stream, then the event itself. */
export function eventJson(
  delivery: BusEvent,
  meta: Pick<DeliveryMeta, 'seq' | 'subject'>,
): JsonObject {
  return {
    seq: meta.seq,
    subject: meta.subject,
    source: delivery.source,
    ...messageJson(messageOf[delivery.source], delivery.event),
  };
}

function eventLine(delivery: BusEvent, meta: DeliveryMeta): string {
  const { who, what, detail } = describeEvent(delivery);
  const at = new Date(delivery.event.occurredAtMs || meta.time.getTime());
  return `${at.toISOString().slice(11, 23)}  #${String(meta.seq).padEnd(6)} ${delivery.source.padEnd(9)} ${who.padEnd(24)} ${what.padEnd(16)} ${detail}`;
}

function serviceOf(delivery: BusEvent): string {
  return delivery.source === 'lifecycle' ? delivery.event.component : delivery.event.serviceId;
}

function startOf(flags: EventsFlags): StartFrom {
  if (flags.fromSeq !== undefined) return { seq: flags.fromSeq };
  if (flags.since !== undefined) return { time: new Date(Date.now() - flags.since) };
  return flags.follow ? { time: new Date(Date.now() - FOLLOW_LOOKBACK_MS) } : 'all';
}

async function lastSeq(bus: Bus): Promise<number> {
  return (await bus.streams()).find((s) => s.name === EVENTS_STREAM)?.lastSeq ?? 0;
}

async function events(bus: Bus, flags: EventsFlags): Promise<number> {
  const from = startOf(flags);
  const last = await lastSeq(bus);
  const startSeq = typeof from === 'object' && 'seq' in from ? from.seq : 0;
  if (!flags.follow && (last === 0 || startSeq > last)) return ExitCodes.ok;
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let printed = 0;
  const print = (delivery: BusEvent, meta: DeliveryMeta) => {
    // A consumer recreated after a hiccup may deliver the last message again.
    if (meta.seq <= printed) return;
    printed = meta.seq;
    if (!flags.service || serviceOf(delivery) === flags.service) {
      if (flags.json) printJsonLine(eventJson(delivery, meta));
      else process.stdout.write(`${eventLine(delivery, meta)}\n`);
    }
    if (!flags.follow && meta.seq >= last) finish();
  };
  const subscription = await bus.subscribe(
    { kind: flags.type ?? 'events', from },
    (delivery, meta) => print(delivery as BusEvent, meta),
  );
  const stop = () => finish();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // Without --follow and nothing of the selected type after the start: stop once the
  // stream has been read.
  const idle = flags.follow
    ? undefined
    : setInterval(async () => {
        if ((await lastSeq(bus)) <= last) finish();
      }, IDLE_CHECK_MS);
  await Promise.race([done, subscription.done]);
  clearInterval(idle);
  await subscription.stop();
  return ExitCodes.ok;
}
