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
import { GATEWAY_SERVICE_ID } from '../../gateway/config.js';
import { withBus } from '../connect.js';
import { ExitCodes } from '../errors.js';
import { formatAge, nameOf, table } from '../format.js';
import { type JsonObject, messageJson, printJson } from '../json.js';
import { launcherJson, launchers, launcherTable } from '../launchers.js';
import { type BusFlags, busOptions } from '../options.js';
import {
  type HostConfigState,
  hostConfigJson,
  hostConfigStates,
  hostConfigText,
  rolloutPhase,
  rolloutRecords,
} from '../rollouts.js';

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
  /** The newest mesh configuration version the hosts know of, and each host against it. */
  readonly config?: {
    readonly latest: number;
    readonly phase: string;
    readonly hosts: HostConfigState[];
  };
}

async function status(bus: Bus, asJson: boolean): Promise<number> {
  const now = Date.now();
  const [registrations, streams, hosts, rollouts] = await Promise.all([
    bus.snapshot('registrations'),
    bus.streams(),
    launchers(bus, undefined),
    meshConfigState(bus),
  ]);
  const instances = [...registrations.entries.values()].sort(
    (a, b) => a.serviceId.localeCompare(b.serviceId) || a.instanceId.localeCompare(b.instanceId),
  );
  const report = { now, instances, hosts, server: bus.server, streams, config: rollouts };
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

/**
 * The newest mesh configuration version and each host against it; undefined when they
 * cannot be read (a bus provisioned before they were kept on it: `halyard bus provision`
 * adds them), so that the rest of the status still shows.
 */
async function meshConfigState(bus: Bus): Promise<StatusReport['config']> {
  try {
    const [records, latest] = await Promise.all([rolloutRecords(bus), bus.meshConfig().latest()]);
    const newest = records.at(-1);
    const version = Math.max(latest?.version ?? 0, newest?.version ?? 0);
    const phase =
      newest?.version === version ? rolloutPhase(newest) : version ? 'not taken up yet' : '-';
    return { latest: version, phase, hosts: hostConfigStates(records, version) };
  } catch {
    return undefined;
  }
}

/** A gateway as a launcher reports it, or as it registered itself, or both. */
interface GatewayRow {
  /** The launcher's host, or `-` for a gateway no launcher runs. */
  readonly host: string;
  /** The launcher's process name (`gateway-<n>`), else the registered instance id. */
  readonly name: string;
  /** The launcher's process state, when a launcher runs it. */
  readonly state: number | undefined;
  /** The registration's status, when it registered itself. */
  readonly registry: number | undefined;
  readonly address: string;
}

/**
 * Gateways from the launchers merged with the `halyard-gateway` registrations, so that
 * one started by hand shows too. A launched gateway and its registration are one row:
 * the registration names the launcher's host (HALYARD_HOST) and the launcher's port.
 */
function gatewaysOf(hosts: LauncherStatus[], instances: ServiceInstance[]): GatewayRow[] {
  const registered = instances.filter((i) => i.serviceId === GATEWAY_SERVICE_ID);
  const matched = new Set<ServiceInstance>();
  const launched = hosts.flatMap((h) =>
    h.processes
      .filter((p) => p.component === 'gateway')
      .map((p): GatewayRow => {
        const own = registered.find(
          (i) => !matched.has(i) && i.hostId === h.hostId && i.address.endsWith(`:${p.port}`),
        );
        if (own) matched.add(own);
        return {
          host: h.hostId,
          name: `gateway-${p.instance}`,
          state: p.state,
          registry: own?.status,
          address: own?.address ?? `127.0.0.1:${p.port}`,
        };
      }),
  );
  const byHand = registered
    .filter((i) => !matched.has(i))
    .map(
      (i): GatewayRow => ({
        host: i.hostId || '-',
        name: i.instanceId,
        state: undefined,
        registry: i.status,
        address: i.address,
      }),
    );
  return [...launched, ...byHand];
}

export function statusJson({ now, instances, hosts, server, streams, config }: StatusReport) {
  const instanceJson = (i: ServiceInstance) => messageJson(ServiceInstanceMessage, i);
  return {
    services: instances.map(
      (i): JsonObject => ({ ...instanceJson(i), leaseAgeMs: now - i.renewedAtMs }),
    ),
    discoveryReplicas: instances
      .filter((i) => i.serviceId === DISCOVERY_SERVICE_ID)
      .map(instanceJson),
    gateways: gatewaysOf(hosts, instances).map((g) => ({
      ...g,
      state: g.state === undefined ? undefined : (State[g.state] ?? g.state),
      registry: g.registry === undefined ? undefined : (InstanceStatus[g.registry] ?? g.registry),
    })),
    launchers: hosts.map(launcherJson),
    config: config && { ...config, hosts: config.hosts.map(hostConfigJson) },
    bus: { server: server.name, cluster: server.cluster, streams },
  };
}

function statusText({ now, instances, hosts, server, streams, config }: StatusReport): string {
  const lease = (i: ServiceInstance) => `${formatAge(now - i.renewedAtMs)}/${i.leaseSeconds}s`;
  const out: string[] = [];
  const services = instances.filter(
    (i) => i.serviceId !== DISCOVERY_SERVICE_ID && i.serviceId !== GATEWAY_SERVICE_ID,
  );
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
  const gateways = gatewaysOf(hosts, instances);
  out.push('', `GATEWAYS (${gateways.length}, from the launchers and the registry)`);
  out.push(
    gateways.length === 0
      ? '  (none)'
      : table(
          ['GATEWAY', 'STATE', 'REGISTRY', 'ADDRESS'],
          gateways.map((g) => [
            `${g.host}/${g.name}`,
            g.state === undefined ? '-' : nameOf(State, g.state),
            g.registry === undefined ? '-' : nameOf(InstanceStatus, g.registry),
            g.address,
          ]),
        ),
  );
  out.push('', `LAUNCHERS (${hosts.length})`, launcherTable(hosts, now));
  if (config) {
    const lagging = config.hosts.filter((h) => h.lagging).length;
    out.push(
      '',
      config.latest
        ? `MESH CONFIGURATION (version ${config.latest}, rollout ${config.phase}; ${lagging} host(s) lagging or failed)`
        : 'MESH CONFIGURATION',
      hostConfigText(config.hosts, config.latest),
    );
  }
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
