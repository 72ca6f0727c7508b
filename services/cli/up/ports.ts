/**
 * The fixed ports of `halyard up`, all derived from `--base-port`: the bus's client,
 * route and monitoring ports, then the mesh's admin ports. Each is checked free before
 * anything starts, so a clash is one clear message rather than a server that dies.
 */
import * as net from 'node:net';
import type { NatsNodeSpec } from '../local-nats.js';
import { CliLogIds as Ids } from '../log.js';
import { ADMIN_BASE_OFFSET, MeshAdminOffsets } from '../mesh.js';
import { UpError } from './errors.js';

export const DEFAULT_BASE_PORT = 4222;
/** Node i listens on base+i (clients), base+2000+i (routes), base+4000+i (monitoring). */
export const PortOffsets = { client: 0, cluster: 2000, monitoring: 4000 } as const;
/** The mesh's admin ports come after the bus's: base+5000 … base+5040. */
const MESH_ADMIN_SPAN = 40;

export interface PortUse {
  readonly port: number;
  readonly what: string;
}

/** Refuses a base port whose derived ports do not all fit below 65536. */
export function checkPortRange(basePort: number, nodes: number): void {
  const highest = Math.max(
    basePort + PortOffsets.monitoring + nodes - 1,
    basePort + ADMIN_BASE_OFFSET + MESH_ADMIN_SPAN,
  );
  if (!Number.isInteger(basePort) || basePort < 1 || highest > 65_535) {
    throw new UpError(
      Ids.badOption,
      `--base-port ${basePort} is out of range: it must leave room for ports up to base+${ADMIN_BASE_OFFSET + MESH_ADMIN_SPAN} (≤ 65535)`,
    );
  }
}

/** Every port the bus's nodes bind, with what it is for. */
export function busPorts(specs: readonly NatsNodeSpec[]): PortUse[] {
  return specs.flatMap((s) => [
    { port: s.port, what: `${s.name} client` },
    ...(specs.length > 1 ? [{ port: s.clusterPort, what: `${s.name} cluster` }] : []),
    { port: s.httpPort, what: `${s.name} monitoring` },
  ]);
}

/** The fixed ports of deploy/local/mesh.yaml (its gRPC ports are picked free by the launcher). */
export function meshAdminPorts(basePort: number): PortUse[] {
  const adminBase = basePort + ADMIN_BASE_OFFSET;
  const o = MeshAdminOffsets;
  return [
    { port: adminBase + o.launcherGrpc, what: 'launcher control' },
    { port: adminBase + o.launcherAdmin, what: 'launcher admin' },
    ...[1, 2].map((i) => ({ port: adminBase + o.discovery + i, what: `discovery-${i} admin` })),
    ...[1, 2].map((i) => ({ port: adminBase + o.gateway + i, what: `gateway-${i} admin` })),
    { port: adminBase + o.cache + 1, what: 'cache-1 admin' },
    { port: adminBase + o.console, what: 'web console' },
  ];
}

/** Throws an UpError naming every port of `ports` that another process holds. */
export async function checkPortsFree(ports: readonly PortUse[]): Promise<void> {
  const free = await Promise.all(ports.map((p) => isPortFree(p.port)));
  const taken = ports.filter((_, i) => !free[i]);
  if (taken.length === 0) return;
  const list = taken.map((p) => `${p.port} (${p.what})`).join(', ');
  throw new UpError(
    Ids.portInUse,
    `port${taken.length > 1 ? 's' : ''} ${list} already in use on 127.0.0.1 by another process ` +
      `(another halyard up with a different --data-dir?). Stop it, or choose other ports with --base-port ` +
      `(\`ss -ltnp 'sport = :${taken[0]?.port}'\` shows who holds it).`,
  );
}

/** Whether `port` can be bound on 127.0.0.1 right now (as nats-server will bind it). */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      srv.close(() => resolve(true));
    });
  });
}
