/**
 * What `halyard up` prints on stdout once ready: where the bus is (URLs, monitoring,
 * streams, buckets, data, logs), where the mesh listens and how to try it.
 */
import * as path from 'node:path';
import { AllBuckets, type Bus, EVENTS_STREAM, kvStream } from '../../../bus/index.js';
import type { LocalNats } from '../local-nats.js';
import { type Endpoint, MeshAdminOffsets } from '../mesh.js';
import { type Jsz, monitorJson } from '../nats-monitor.js';
import { monitoringUrls } from './bus.js';

interface StreamSummary {
  readonly name: string;
  readonly replicas: number | undefined;
  readonly messages: number | undefined;
}

/** What the server holds after provisioning (so the summary shows streams added to bus/ later too). */
async function streamsOn(local: LocalNats): Promise<StreamSummary[] | undefined> {
  const jsz = (await monitorJson(
    local.node(0).httpPort,
    '/jsz?accounts=true&streams=true&config=true',
  )) as Jsz | undefined;
  if (!jsz?.account_details) return undefined;
  return jsz.account_details
    .flatMap((a) => a.stream_detail ?? [])
    .map((s) => ({ name: s.name, replicas: s.config?.num_replicas, messages: s.state?.messages }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The bus part of the summary. */
export async function busSummary(local: LocalNats, bus: Bus, dataDir: string): Promise<string> {
  const streams = await streamsOn(local);
  const size = local.nodes.length;
  const names = size === 1 ? 'n0' : `n{${local.nodes.map((n) => n.index).join(',')}}`;
  const nodeDir = path.join(dataDir, 'nats', names);
  const version = bus.server.version;
  const what =
    size === 1 ? 'a single NATS JetStream server' : `a ${size}-node NATS JetStream cluster`;
  const bucketOf = new Map<string, string>(AllBuckets.map((b) => [kvStream(b.name), b.name]));
  const describe = (s: StreamSummary, name: string) =>
    `${name} (${s.messages ?? '?'} msgs${s.replicas !== bus.replicas ? `, ${s.replicas ?? '?'} replicas` : ''})`;
  // Should the monitoring endpoint not answer, the names Halyard provisions for sure.
  const streamList =
    streams
      ?.filter((s) => !bucketOf.has(s.name))
      .map((s) => describe(s, s.name))
      .join('  ') ?? EVENTS_STREAM;
  const bucketList =
    streams
      ?.flatMap((s) => {
        const bucket = bucketOf.get(s.name);
        return bucket ? [describe(s, bucket)] : [];
      })
      .join('  ') ?? AllBuckets.map((b) => b.name).join('  ');
  const rows: [string, string][] = [
    ['NATS URLs', local.servers.join(',')],
    ['monitoring', monitoringUrls(local).join('  ')],
    ['replicas', String(bus.replicas)],
    [
      'security',
      local.secureBundle
        ? `TLS, one nkey per role; roles in ${path.join(local.secureBundle, 'roles')}`
        : 'none (--insecure): anyone reaching these ports controls the mesh',
    ],
    ['streams', streamList],
    ['buckets', bucketList],
    ['data', path.join(nodeDir, 'jetstream')],
    ['logs', path.join(nodeDir, 'nats.log')],
  ];
  const lines = [
    `Halyard bus: ${what}${version ? ` (nats-server ${version})` : ''}`,
    ...rows.map(([k, v]) => `  ${k.padEnd(11)} ${v}`),
  ];
  return `${lines.join('\n')}\n`;
}

/** The mesh part: where it listens and how to try it. */
export function meshSummary(endpoints: Endpoint[], adminBase: number): string {
  const titles: Record<string, string> = {
    gateway: 'gateway (gRPC, h2c)',
    discovery: 'discovery (registry gRPC)',
    cache: 'cache (gRPC)',
    greeter: 'greeter (demo, direct)',
  };
  const rows = endpoints.map((e) => {
    const name = `${e.component}-${e.instance}`;
    const admin = e.adminPort ? `  admin http://127.0.0.1:${e.adminPort}/metrics` : '';
    return `  ${name.padEnd(12)} 127.0.0.1:${e.port}${admin}  ${titles[e.component] ?? ''}`;
  });
  const gateways = endpoints.filter((e) => e.component === 'gateway');
  const call = (g: Endpoint | undefined, i: number) =>
    `  ./halyard call 127.0.0.1:${g?.port ?? '<gateway port>'} demo.greeter.v1.Greeter/SayHello --data '{"name":"gateway ${i}"}'`;
  return [
    'Halyard mesh: one launcher (host "local") running deploy/local/mesh.yaml',
    ...rows,
    `  launcher     control 127.0.0.1:${adminBase + MeshAdminOffsets.launcherGrpc}  admin http://127.0.0.1:${adminBase + MeshAdminOffsets.launcherAdmin}/metrics`,
    '',
    'Call the demo through either gateway (another terminal, in this directory):',
    call(gateways[0], 1),
    call(gateways[1], 2),
    `  ./halyard call 127.0.0.1:${gateways[0]?.port ?? '<gateway port>'} demo.greeter.v1.Greeter/StreamHellos --data '{"name":"you","count":3}'`,
    'Watch it:',
    '  ./halyard status',
    '  ./halyard events --follow',
    '',
  ].join('\n');
}

/** The last line: up is ready. */
export function readyLine(): string {
  return `Ready in ${process.uptime().toFixed(1)} s. Ctrl-C to stop.\n`;
}
