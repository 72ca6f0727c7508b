/**
 * The `halyard` operator commands: status, events, launcher, affinity, call. Each one
 * connects to the bus (see connect.ts), prints a readable table or `--json`, and exits
 * with a code from ExitCodes.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { type Command, InvalidArgumentError, Option } from 'commander';
import protobuf from 'protobufjs';
import {
  AffinityBucket,
  type AffinityPreference,
  type Bus,
  type BusEvent,
  ControlError,
  type DeliveryMeta,
  EVENTS_STREAM,
  type EventSource,
  EventSources,
  Keys,
  type LauncherStatus,
  type ServiceInstance,
  type StartFrom,
  Subjects,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { ControlCodecsOf } from '../launcher/control.js';
import {
  CliError,
  type ConnectionFlags,
  ExitCodes,
  formatAge,
  parseDuration,
  table,
  withBus,
} from './connect.js';

const { InstanceStatus } = halyard.discovery.v1;
const LifecycleKind = halyard.launcher.v1.LifecycleEvent.Kind;
const GatewayKind = halyard.gateway.v1.GatewayEvent.Kind;
const DiscoveryKind = halyard.discovery.v1.DiscoveryEvent.Kind;
const ProcessState = halyard.launcher.v1.ProcessStatus.State;
const DISCOVERY_SERVICE_ID = 'halyard-discovery';
const FAN_OUT_WAIT_MS = 1500;

const nameOf = (values: Record<string, string | number>, n: number) =>
  (Object.entries(values).find(([, v]) => v === n)?.[0] ?? String(n)).toLowerCase();

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

function connectionOptions(cmd: Command): Command {
  return cmd
    .option(
      '--servers <urls>',
      'comma-separated NATS URLs (env HALYARD_NATS; default: the running `halyard up`, else nats://127.0.0.1:4222)',
    )
    .option('--json', 'machine-readable output', false);
}

// ---------------------------------------------------------------------------
// status

async function launchers(bus: Bus, host: string | undefined): Promise<LauncherStatus[]> {
  const subject = Subjects.control('launcher', host ?? '*', 'display');
  if (host) {
    try {
      return [await bus.request(subject, {}, ControlCodecsOf.display, 3000)];
    } catch (error) {
      throw new CliError(`launcher ${host}: ${(error as Error).message}`);
    }
  }
  const replies = await bus.requestMany(subject, {}, ControlCodecsOf.display, FAN_OUT_WAIT_MS);
  return replies
    .flatMap((r) => (r.ok ? [r.value] : []))
    .sort((a, b) => a.hostId.localeCompare(b.hostId));
}

function launcherTable(list: LauncherStatus[], now: number): string {
  if (list.length === 0) return '  (no launcher answered)';
  return list
    .map((l) => {
      const rows = l.processes.map((p) => [
        `${p.component}#${p.instance}`,
        nameOf(ProcessState, p.state),
        p.pid ? String(p.pid) : '-',
        p.port ? String(p.port) : '-',
        p.startedAtMs ? formatAge(now - p.startedAtMs) : '-',
        String(p.restarts),
        p.lastExit || '',
      ]);
      return `  host ${l.hostId} (launcher ${l.launcherId}, up ${formatAge(now - l.startedAtMs)})\n${table(
        ['PROCESS', 'STATE', 'PID', 'PORT', 'UPTIME', 'RESTARTS', 'LAST EXIT'],
        rows,
        '    ',
      )}`;
    })
    .join('\n');
}

async function status(bus: Bus, asJson: boolean): Promise<number> {
  const now = Date.now();
  const [registrations, streams, hosts] = await Promise.all([
    bus.snapshot('registrations'),
    bus.streams(),
    launchers(bus, undefined),
  ]);
  const instances = [...registrations.entries.values()].sort(
    (a, b) => a.serviceId.localeCompare(b.serviceId) || a.instanceId.localeCompare(b.instanceId),
  );
  const gateways = hosts.flatMap((h) =>
    h.processes
      .filter((p) => p.component === 'gateway')
      .map((p) => ({ host: h.hostId, instance: p.instance, port: p.port, state: p.state })),
  );
  const server = bus.server;
  if (asJson) {
    process.stdout.write(
      json({
        services: instances.map((i) => ({
          ...i,
          status: nameOf(InstanceStatus, i.status),
          leaseAgeMs: now - i.renewedAtMs,
        })),
        discoveryReplicas: instances.filter((i) => i.serviceId === DISCOVERY_SERVICE_ID),
        gateways: gateways.map((g) => ({ ...g, state: nameOf(ProcessState, g.state) })),
        launchers: hosts,
        bus: { server: server.name, cluster: server.cluster, streams },
      }),
    );
    return ExitCodes.ok;
  }
  const out: string[] = [];
  const services = instances.filter((i) => i.serviceId !== DISCOVERY_SERVICE_ID);
  out.push(`SERVICES (${new Set(services.map((i) => i.serviceId)).size})`);
  out.push(
    services.length === 0
      ? '  (none registered)'
      : table(
          ['SERVICE', 'INSTANCE', 'STATUS', 'ADDRESS', 'LEASE AGE', 'HOST', 'POLICY'],
          services.map((i) => [
            i.serviceId,
            i.instanceId,
            nameOf(InstanceStatus, i.status),
            i.address,
            `${formatAge(now - i.renewedAtMs)}/${i.leaseSeconds}s`,
            i.hostId || '-',
            i.metadata['lb.policy'] ?? 'round-robin',
          ]),
        ),
  );
  const replicas = instances.filter((i) => i.serviceId === DISCOVERY_SERVICE_ID);
  out.push('', `DISCOVERY REPLICAS (${replicas.length})`);
  out.push(
    replicas.length === 0
      ? '  (none)'
      : table(
          ['REPLICA', 'STATUS', 'ADDRESS', 'LEASE AGE'],
          replicas.map((i) => [
            i.instanceId,
            nameOf(InstanceStatus, i.status),
            i.address,
            `${formatAge(now - i.renewedAtMs)}/${i.leaseSeconds}s`,
          ]),
        ),
  );
  out.push('', `GATEWAYS (${gateways.length}, from the launchers)`);
  out.push(
    gateways.length === 0
      ? '  (none)'
      : table(
          ['GATEWAY', 'STATE', 'ADDRESS'],
          gateways.map((g) => [
            `${g.host}/gateway-${g.instance}`,
            nameOf(ProcessState, g.state),
            `127.0.0.1:${g.port}`,
          ]),
        ),
  );
  out.push('', `LAUNCHERS (${hosts.length})`, launcherTable(hosts, now));
  out.push(
    '',
    `BUS (connected to ${server.name ?? '?'}${server.cluster ? `, cluster ${server.cluster}` : ''})`,
  );
  out.push(
    table(
      ['STREAM', 'REPLICAS', 'MESSAGES', 'LEADER', 'FOLLOWERS'],
      streams.map((s) => [
        s.name,
        String(s.replicas),
        String(s.messages),
        s.leader ?? (s.replicas > 1 ? 'none!' : '-'),
        s.followers.map((f) => `${f.name}${f.current ? '' : ` (behind ${f.lag})`}`).join(', ') ||
          '-',
      ]),
    ),
  );
  process.stdout.write(`${out.join('\n')}\n`);
  const unhealthy = streams.some(
    (s) => (s.replicas > 1 && !s.leader) || s.followers.some((f) => !f.current),
  );
  return unhealthy ? ExitCodes.failed : ExitCodes.ok;
}

// ---------------------------------------------------------------------------
// events

interface EventsFlags extends ConnectionFlags {
  json: boolean;
  follow: boolean;
  since?: number;
  fromSeq?: number;
  type?: EventSource;
  service?: string;
}

export function describeEvent(delivery: BusEvent): { who: string; what: string; detail: string } {
  switch (delivery.source) {
    case 'lifecycle': {
      const e = delivery.event;
      const parts = [
        e.pid ? `pid ${e.pid}` : '',
        e.port ? `port ${e.port}` : '',
        e.signal ? `signal ${e.signal}` : '',
        e.kind === LifecycleKind.EXITED && !e.signal ? `code ${e.exitCode}` : '',
        e.delayMs ? `in ${formatAge(e.delayMs)}` : '',
        e.attempt ? `attempt ${e.attempt}` : '',
        e.reason,
      ];
      return {
        who: `${e.hostId}/${e.component}#${e.instance}`,
        what: nameOf(LifecycleKind, e.kind),
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
        what: nameOf(GatewayKind, e.kind),
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
        what: nameOf(DiscoveryKind, e.kind),
        detail: parts.filter(Boolean).join(' · '),
      };
    }
  }
}

function serviceOf(delivery: BusEvent): string {
  return delivery.source === 'lifecycle' ? delivery.event.component : delivery.event.serviceId;
}

async function events(bus: Bus, flags: EventsFlags): Promise<number> {
  const from: StartFrom =
    flags.fromSeq !== undefined
      ? { seq: flags.fromSeq }
      : flags.since !== undefined
        ? { time: new Date(Date.now() - flags.since) }
        : flags.follow
          ? { time: new Date(Date.now() - 10 * 60_000) }
          : 'all';
  const stream = (await bus.streams()).find((s) => s.name === EVENTS_STREAM);
  const last = stream?.lastSeq ?? 0;
  const startSeq = typeof from === 'object' && 'seq' in from ? from.seq : 0;
  if (!flags.follow && (last === 0 || startSeq > last)) return ExitCodes.ok;
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  let printed = 0;
  const print = (delivery: BusEvent, meta: DeliveryMeta) => {
    // A consumer recreated after a hiccup may deliver the last message again.
    if (meta.seq <= printed) return;
    printed = meta.seq;
    if (!flags.service || serviceOf(delivery) === flags.service) {
      if (flags.json) {
        process.stdout.write(
          `${JSON.stringify({ seq: meta.seq, subject: meta.subject, source: delivery.source, ...delivery.event })}\n`,
        );
      } else {
        const { who, what, detail } = describeEvent(delivery);
        const at = new Date(delivery.event.occurredAtMs || meta.time.getTime());
        process.stdout.write(
          `${at.toISOString().slice(11, 23)}  #${String(meta.seq).padEnd(6)} ${delivery.source.padEnd(9)} ${who.padEnd(24)} ${what.padEnd(16)} ${detail}\n`,
        );
      }
    }
    if (!flags.follow && meta.seq >= last) resolveDone();
  };
  const subscription = await bus.subscribe(
    { kind: flags.type ?? 'events', from },
    (delivery, meta) => print(delivery as BusEvent, meta),
  );
  const stop = () => resolveDone();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (!flags.follow) {
    // Nothing of the selected type after the start: stop once the stream has been read.
    const idle = setInterval(async () => {
      const info = (await bus.streams()).find((s) => s.name === EVENTS_STREAM);
      if ((info?.lastSeq ?? 0) <= last) resolveDone();
    }, 1000);
    await Promise.race([done, subscription.done]);
    clearInterval(idle);
  } else {
    await Promise.race([done, subscription.done]);
  }
  await subscription.stop();
  return ExitCodes.ok;
}

// ---------------------------------------------------------------------------
// launcher

type Verb = 'display' | 'start' | 'stop' | 'restart' | 'refresh';

async function launcherCommand(
  bus: Bus,
  verb: Verb,
  flags: ConnectionFlags & { json: boolean; host?: string },
  component?: string,
  instance?: number,
): Promise<number> {
  if (verb === 'display') {
    const list = await launchers(bus, flags.host);
    if (flags.json) process.stdout.write(json(list));
    else process.stdout.write(`${launcherTable(list, Date.now())}\n`);
    return list.length === 0 ? ExitCodes.failed : ExitCodes.ok;
  }
  const request = verb === 'refresh' ? {} : { component: component ?? '', instance: instance ?? 0 };
  const codecs = ControlCodecsOf[verb] as typeof ControlCodecsOf.start;
  // A fan-out cannot know how many launchers will answer, and a rolling restart takes a
  // while: find the hosts first (display), then ask each one and wait for its answer.
  const hosts = flags.host ? [flags.host] : (await launchers(bus, undefined)).map((l) => l.hostId);
  const replies = await Promise.all(
    hosts.map((host) =>
      bus
        .request(Subjects.control('launcher', host, verb), request as never, codecs, 300_000)
        .then((value) => ({ ok: true as const, value }))
        .catch((error: unknown) => {
          if (error instanceof ControlError) return { ok: false as const, error };
          throw new CliError(`launcher ${host}: ${(error as Error).message}`);
        }),
    ),
  );
  if (flags.json) {
    process.stdout.write(
      json(replies.map((r) => (r.ok ? r.value : { error: `${r.error.code}: ${r.error.message}` }))),
    );
  } else if (replies.length === 0) {
    process.stdout.write('no launcher answered\n');
  } else {
    for (const [i, r] of replies.entries()) {
      const host = hosts[i] ?? '?';
      if (r.ok) {
        process.stdout.write(`${host}: ${r.value.accepted ? 'ok' : 'refused'} ${r.value.detail}\n`);
      } else {
        process.stdout.write(`${host}: error ${r.error.code}: ${r.error.message}\n`);
      }
    }
  }
  const failed = replies.length === 0 || replies.some((r) => !r.ok || !r.value.accepted);
  return failed ? ExitCodes.failed : ExitCodes.ok;
}

// ---------------------------------------------------------------------------
// affinity

function affinityRows(list: AffinityPreference[], now: number): string[][] {
  return list.map((p) => [
    p.serviceId,
    p.userKey,
    p.instanceId,
    formatAge(now - p.createdAtMs),
    formatAge(now - p.lastSeenAtMs),
    p.gatewayId || '-',
  ]);
}

async function affinity(
  bus: Bus,
  action: 'list' | 'show' | 'clear',
  flags: ConnectionFlags & { json: boolean; service?: string; all?: boolean },
  userKey?: string,
): Promise<number> {
  const now = Date.now();
  const { entries } = await bus.snapshot('affinity');
  let list = [...entries.values()].filter((p) => !flags.service || p.serviceId === flags.service);
  if (userKey) list = list.filter((p) => p.userKey === userKey || p.userKey.startsWith(userKey));
  list.sort((a, b) => a.serviceId.localeCompare(b.serviceId) || b.lastSeenAtMs - a.lastSeenAtMs);
  if (action === 'clear') {
    if (!userKey && !flags.service && !flags.all) {
      throw new CliError(
        'affinity clear needs a user key, --service S or --all (what to forget)',
        ExitCodes.usage,
      );
    }
    const store = await bus.store(AffinityBucket);
    for (const p of list) await store.remove(Keys.affinity(p.serviceId, p.userKey));
    if (flags.json) process.stdout.write(json({ cleared: list.length }));
    else process.stdout.write(`cleared ${list.length} preference(s)\n`);
    return ExitCodes.ok;
  }
  if (action === 'show' && list.length === 0) {
    throw new CliError(`no preference for user key ${userKey}`);
  }
  if (flags.json) {
    process.stdout.write(json(list));
    return ExitCodes.ok;
  }
  process.stdout.write(
    list.length === 0
      ? 'no user preferences (services with lb.policy=user record them on first call)\n'
      : `${table(['SERVICE', 'USER KEY', 'INSTANCE', 'AGE', 'LAST SEEN', 'GATEWAY'], affinityRows(list, now), '')}\n`,
  );
  return ExitCodes.ok;
}

// ---------------------------------------------------------------------------
// call

const DEMO_DESCRIPTOR = new URL('../../proto/gen/halyard.json', import.meta.url);

interface CallFlags {
  data: string;
  proto?: string[];
  metadata?: string[];
  timeout: number;
  json: boolean;
}

async function call(gateway: string, target: string, flags: CallFlags): Promise<number> {
  const [serviceName, methodName] = target.split('/');
  if (!serviceName || !methodName) {
    throw new CliError(
      `expected <service>/<method>, e.g. demo.greeter.v1.Greeter/SayHello; got ${target}`,
      ExitCodes.usage,
    );
  }
  const root = flags.proto?.length
    ? await protobuf.load(flags.proto)
    : protobuf.Root.fromJSON(JSON.parse(readFileSync(DEMO_DESCRIPTOR, 'utf8')));
  let method: protobuf.Method | undefined;
  try {
    method = root.lookupService(serviceName).methods[methodName]?.resolve() as
      | protobuf.Method
      | undefined;
  } catch {
    method = undefined;
  }
  if (!method) {
    // Not in the .proto we have: the gateway (and the service) still say what they make
    // of it, so send an empty message and report their answer.
    if (flags.data.trim() !== '{}') {
      throw new CliError(
        `${target} is not in ${flags.proto?.join(', ') ?? "the demo's .proto"}: give its .proto with --proto <file> to send --data`,
        ExitCodes.usage,
      );
    }
    return rawCall(gateway, target, flags);
  }
  let data: unknown;
  try {
    data = JSON.parse(flags.data);
  } catch (error) {
    throw new CliError(`--data is not JSON: ${(error as Error).message}`, ExitCodes.usage);
  }
  const requestType = method.resolvedRequestType as protobuf.Type;
  const responseType = method.resolvedResponseType as protobuf.Type;
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new CliError('--data must be a JSON object', ExitCodes.usage);
  }
  // The .proto's snake_case names are accepted as well as the JSON camelCase ones.
  data = Object.fromEntries(
    Object.entries(data).map(([k, v]) => [
      k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()),
      v,
    ]),
  );
  const known = new Set(
    requestType.fieldsArray.flatMap((f) => [f.name, f.options?.json_name ?? f.name]),
  );
  const unknown = Object.keys(data as object).filter((k) => !known.has(k));
  if (unknown.length > 0) {
    throw new CliError(
      `--data: ${requestType.fullName.slice(1)} has no field ${unknown.join(', ')} (fields: ${requestType.fieldsArray.map((f) => f.name).join(', ')})`,
      ExitCodes.usage,
    );
  }
  const problem = requestType.verify(data as Record<string, unknown>);
  if (problem) throw new CliError(`--data: ${problem}`, ExitCodes.usage);
  const serialize = (value: object) =>
    Buffer.from(requestType.encode(requestType.fromObject(value)).finish());
  const deserialize = (bytes: Buffer) =>
    responseType.toObject(responseType.decode(bytes), {
      longs: String,
      enums: String,
      defaults: true,
    });
  const metadata = new grpc.Metadata();
  for (const pair of flags.metadata ?? []) {
    const eq = pair.indexOf('=');
    if (eq < 1) throw new CliError(`--header ${pair}: expected key=value`, ExitCodes.usage);
    metadata.add(pair.slice(0, eq).toLowerCase(), pair.slice(eq + 1));
  }
  const client = new grpc.Client(gateway, grpc.credentials.createInsecure());
  const path = `/${serviceName}/${methodName}`;
  const deadline = new Date(Date.now() + flags.timeout * 1000);
  const print = (value: object, headers: grpc.Metadata | undefined) => {
    const served = headers?.get('x-halyard-gateway')[0];
    process.stdout.write(
      flags.json
        ? `${JSON.stringify(value)}\n`
        : `${JSON.stringify(value)}${served ? `   (via ${served})` : ''}\n`,
    );
  };
  let headers: grpc.Metadata | undefined;
  try {
    if (method.requestStream) {
      throw new CliError(
        `${target} is client-streaming: not supported by halyard call`,
        ExitCodes.usage,
      );
    }
    await new Promise<void>((resolve, reject) => {
      if (method.responseStream) {
        const stream = client.makeServerStreamRequest(
          path,
          serialize,
          deserialize,
          data as object,
          metadata,
          {
            deadline,
          },
        );
        stream.on('metadata', (m) => {
          headers = m;
        });
        stream.on('data', (value: object) => print(value, headers));
        stream.on('error', reject);
        stream.on('end', resolve);
      } else {
        const unary = client.makeUnaryRequest(
          path,
          serialize,
          deserialize,
          data as object,
          metadata,
          { deadline },
          (error, value) => {
            if (error) return reject(error);
            print(value as object, headers);
            resolve();
          },
        );
        unary.on('metadata', (m) => {
          headers = m;
        });
      }
    });
    return ExitCodes.ok;
  } catch (error) {
    if (error instanceof CliError) throw error;
    const e = error as grpc.ServiceError;
    const code = grpc.status[e.code] ?? String(e.code);
    throw new CliError(
      `${target} via ${gateway} failed: ${code}: ${(e.details || e.message).replace(/\s*Resolution note:\s*$/, '')}`,
      e.code === grpc.status.UNAVAILABLE ? ExitCodes.unreachable : ExitCodes.failed,
    );
  } finally {
    client.close();
  }
}

/** An empty request to a method we have no .proto for; the reply is shown as base64. */
async function rawCall(gateway: string, target: string, flags: CallFlags): Promise<number> {
  const client = new grpc.Client(gateway, grpc.credentials.createInsecure());
  try {
    const reply = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(
        `/${target}`,
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        new grpc.Metadata(),
        { deadline: new Date(Date.now() + flags.timeout * 1000) },
        (error, value) => (error ? reject(error) : resolve(value ?? Buffer.alloc(0))),
      ),
    );
    process.stdout.write(`${JSON.stringify({ base64: reply.toString('base64') })}\n`);
    return ExitCodes.ok;
  } catch (error) {
    const e = error as grpc.ServiceError;
    throw new CliError(
      `${target} via ${gateway} failed: ${grpc.status[e.code] ?? e.code}: ${e.details || e.message}`,
      e.code === grpc.status.UNAVAILABLE ? ExitCodes.unreachable : ExitCodes.failed,
    );
  } finally {
    client.close();
  }
}

// ---------------------------------------------------------------------------

function durationArg(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined)
    throw new InvalidArgumentError('expected a duration like 90s, 10m, 2h or 1d');
  return ms;
}

function seqArg(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw new InvalidArgumentError('expected a stream sequence number (1 or more)');
  }
  return Number(value);
}

function instanceArg(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected an instance number (0 = all)');
  return Number(value);
}

export function addCommands(program: Command): void {
  connectionOptions(
    program
      .command('status')
      .description(
        'services → instances (status, address, lease age), discovery replicas, gateways, launchers, bus health',
      ),
  )
    .addHelpText('after', '\nExit code 1 when a stream has no leader or a replica is behind.')
    .action(async (opts: ConnectionFlags & { json: boolean }) =>
      withBus(opts, (bus) => status(bus, opts.json)),
    );

  connectionOptions(
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
    .action(async (opts: EventsFlags) => {
      if (opts.since !== undefined && opts.fromSeq !== undefined) {
        process.stderr.write('halyard: --since and --from-seq exclude each other\n');
        process.exitCode = ExitCodes.usage;
        return;
      }
      await withBus(opts, (bus) => events(bus, opts));
    });

  const launcher = program
    .command('launcher')
    .description('the launchers over the bus: every host, or one with --host');
  const verbs: Array<[Verb, string]> = [
    ['display', 'the processes each launcher runs'],
    ['start', 'start a component (or one instance); also forgets a GAVE_UP'],
    ['stop', 'stop a component (or one instance)'],
    ['restart', 'rolling restart of a component (or one instance)'],
    ['refresh', 're-read the config file and apply the difference'],
  ];
  for (const [verb, description] of verbs) {
    const cmd = connectionOptions(
      launcher
        .command(verb)
        .description(description)
        .option('--host <id>', 'only this host (default: every launcher)'),
    );
    if (verb !== 'display' && verb !== 'refresh') {
      cmd
        .argument('<component>', 'component name in the launcher config, e.g. greeter')
        .argument('[instance]', 'instance number (default 0: every instance)', instanceArg);
    }
    cmd.action(async (...args: unknown[]) => {
      const takesComponent = verb !== 'display' && verb !== 'refresh';
      const component = takesComponent ? (args[0] as string) : undefined;
      const instance = takesComponent ? (args[1] as number | undefined) : undefined;
      const opts = args[takesComponent ? 2 : 0] as ConnectionFlags & {
        json: boolean;
        host?: string;
      };
      await withBus(opts, (bus) => launcherCommand(bus, verb, opts, component, instance));
    });
  }

  const aff = program
    .command('affinity')
    .description(
      'sticky routing preferences (lb.policy=user): user keys (HMAC digests, never user ids) → instance',
    );
  connectionOptions(
    aff
      .command('list')
      .description('every preference: service, user key, instance, age')
      .option('--service <id>', 'only this service'),
  ).action(async (opts: ConnectionFlags & { json: boolean; service?: string }) =>
    withBus(opts, (bus) => affinity(bus, 'list', opts)),
  );
  connectionOptions(
    aff
      .command('show')
      .description("one user key's preferences (a prefix is enough)")
      .argument('<user-key>', 'the user key as listed')
      .option('--service <id>', 'only this service'),
  ).action(async (key: string, opts: ConnectionFlags & { json: boolean; service?: string }) =>
    withBus(opts, (bus) => affinity(bus, 'show', opts, key)),
  );
  connectionOptions(
    aff
      .command('clear')
      .description('forget preferences: the next call of those users is balanced afresh')
      .argument('[user-key]', 'one user key (or prefix)')
      .option('--service <id>', "only this service's")
      .option('--all', 'every preference', false),
  ).action(
    async (
      key: string | undefined,
      opts: ConnectionFlags & { json: boolean; service?: string; all: boolean },
    ) => withBus(opts, (bus) => affinity(bus, 'clear', opts, key)),
  );

  program
    .command('call')
    .description('a gRPC call through a gateway (JSON in, JSON out), like grpcurl')
    .argument('<gateway>', 'gateway address host:port (halyard up prints them)')
    .argument('<service/method>', 'e.g. demo.greeter.v1.Greeter/SayHello')
    .option('-d, --data <json>', 'the request message as JSON', '{}')
    .option('--proto <file...>', ".proto file(s) of the service (default: the demo's)")
    .option('-H, --header <key=value...>', 'request metadata, e.g. x-user-id=alice')
    .option(
      '--timeout <seconds>',
      'deadline',
      (v) => {
        const n = Number(v);
        if (!(n > 0)) throw new InvalidArgumentError('expected seconds > 0');
        return n;
      },
      10,
    )
    .option('--json', 'one JSON message per line, nothing else', false)
    .addHelpText(
      'after',
      `
Exit codes: 0 ok, 1 the call failed (the gateway's status and message are printed),
2 bad arguments, 3 the gateway is unreachable.

Examples:
  halyard call 127.0.0.1:PORT demo.greeter.v1.Greeter/SayHello --data '{"name":"Ada"}'
  halyard call 127.0.0.1:PORT demo.greeter.v1.Greeter/StreamHellos --data '{"name":"Ada","count":5}'
  halyard call 127.0.0.1:PORT acme.orders.v1.Orders/Get --proto orders.proto --data '{"id":"7"}'`,
    )
    .action(async (gateway: string, target: string, opts: CallFlags & { header?: string[] }) => {
      try {
        process.exitCode = await call(gateway, target, { ...opts, metadata: opts.header });
      } catch (error) {
        const { reportError } = await import('./connect.js');
        reportError(error);
      }
    });
}

export type { ServiceInstance };
