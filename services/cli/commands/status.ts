/**
 * `halyard status`: services → instances, discovery replicas, gateways, launchers and
 * the bus's health. Exit code 1 when a stream has no leader or a replica is behind.
 */
import type { Command } from 'commander';
import type {
  Bus,
  LauncherStatus,
  ServerInfo,
  ServiceInstance,
  StreamHealth,
} from '../../../bus/index.js';
import { halyard } from '../../../proto/gen/halyard.js';
import { DISCOVERY_SERVICE_ID } from '../../discovery/health-checker.js';
import { withBus } from '../connect.js';
import { ExitCodes } from '../errors.js';
import { formatAge, nameOf, table } from '../format.js';
import { type JsonObject, messageJson, printJson } from '../json.js';
import { launcherJson, launchers, launcherTable } from '../launchers.js';
import { type BusFlags, busOptions } from '../options.js';

const { InstanceStatus, ServiceInstance: ServiceInstanceMessage } = halyard.discovery.v1;
const { State } = halyard.launcher.v1.ProcessStatus;

export function addStatusCommand(program: Command): void {
  busOptions(
    program
      .command('status')
      .description(
        'services → instances (status, address, lease age), discovery replicas, gateways, launchers, bus health',
      ),
  )
    .addHelpText('after', '\nExit code 1 when a stream has no leader or a replica is behind.')
    .action(async (opts: BusFlags, cmd: Command) => withBus(cmd, (bus) => status(bus, opts.json)));
}

/** What status reports, as read from the bus at `now`. */
export interface StatusReport {
  readonly now: number;
  readonly instances: ServiceInstance[];
  readonly hosts: LauncherStatus[];
  readonly server: ServerInfo;
  readonly streams: StreamHealth[];
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
  const report = { now, instances, hosts, server: bus.server, streams };
  if (asJson) {
    printJson(statusJson(report));
    return ExitCodes.ok;
  }
  process.stdout.write(`${statusText(report)}\n`);
  const unhealthy = streams.some(
    (s) => (s.replicas > 1 && !s.leader) || s.followers.some((f) => !f.current),
  );
  return unhealthy ? ExitCodes.failed : ExitCodes.ok;
}

function gatewaysOf(hosts: LauncherStatus[]) {
  return hosts.flatMap((h) =>
    h.processes
      .filter((p) => p.component === 'gateway')
      .map((p) => ({ host: h.hostId, instance: p.instance, port: p.port, state: p.state })),
  );
}

export function statusJson({ now, instances, hosts, server, streams }: StatusReport) {
  const instanceJson = (i: ServiceInstance) => messageJson(ServiceInstanceMessage, i);
  return {
    services: instances.map(
      (i): JsonObject => ({ ...instanceJson(i), leaseAgeMs: now - i.renewedAtMs }),
    ),
    discoveryReplicas: instances
      .filter((i) => i.serviceId === DISCOVERY_SERVICE_ID)
      .map(instanceJson),
    gateways: gatewaysOf(hosts).map((g) => ({ ...g, state: State[g.state] ?? g.state })),
    launchers: hosts.map(launcherJson),
    bus: { server: server.name, cluster: server.cluster, streams },
  };
}

function statusText({ now, instances, hosts, server, streams }: StatusReport): string {
  const lease = (i: ServiceInstance) => `${formatAge(now - i.renewedAtMs)}/${i.leaseSeconds}s`;
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
            lease(i),
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
            lease(i),
          ]),
        ),
  );
  const gateways = gatewaysOf(hosts);
  out.push('', `GATEWAYS (${gateways.length}, from the launchers)`);
  out.push(
    gateways.length === 0
      ? '  (none)'
      : table(
          ['GATEWAY', 'STATE', 'ADDRESS'],
          gateways.map((g) => [
            `${g.host}/gateway-${g.instance}`,
            nameOf(State, g.state),
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
  return out.join('\n');
}
