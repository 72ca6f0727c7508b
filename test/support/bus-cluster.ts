/** The set-up most integration files share: a real cluster and a provisioned Bus on it. */
import type { Logger } from 'pino';
import { Bus } from '../../bus/index.js';
import { busOptions, busSettings } from '../../services/common/bus-settings.js';
import { type ClusterOptions, NatsCluster } from './nats-cluster.js';

export async function startBusCluster(
  name: string,
  logger?: Logger,
  options?: ClusterOptions,
): Promise<{ cluster: NatsCluster; bus: Bus }> {
  const cluster = await NatsCluster.start(options);
  try {
    const bus = await Bus.connect({
      servers: cluster.servers,
      name,
      ...(logger ? { logger } : {}),
    });
    await bus.provision();
    return { cluster, bus };
  } catch (error) {
    await cluster.close();
    throw error;
  }
}

/** One Bus connected to each node of the cluster, in node order. */
export function connectEach(cluster: NatsCluster, name: string, logger?: Logger): Promise<Bus[]> {
  return Promise.all(
    cluster.servers.map((server, i) =>
      Bus.connect({ servers: server, name: `${name}-n${i}`, ...(logger ? { logger } : {}) }),
    ),
  );
}

/**
 * A Bus connected to a secure cluster as `role`, the way a component connects: from its
 * bus settings (TLS files and nkey). Fails at once rather than retrying a refusal.
 */
export function connectAs(cluster: NatsCluster, role: string, logger: Logger): Promise<Bus> {
  const { servers, ...files } = cluster.role(role);
  const settings = busSettings.parse({ servers, ...files });
  return Bus.connect({ ...busOptions(settings, role, logger), failFast: true });
}
