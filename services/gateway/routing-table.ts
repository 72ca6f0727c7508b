/**
 * The routing table: gRPC service name → the instances that serve it, built in memory
 * from the registry's local view and rebuilt when the view changes (never per call),
 * so that routing a call is one map look-up.
 */
import type { Logger } from 'pino';
import type { LocalView, ServiceInstance, ViewChange } from '../../bus/index.js';
import {
  type BalancingSettings,
  type InstanceSettings,
  parseInstanceMetadata,
} from '../common/lb-metadata.js';
import { type Balancer, RoundRobin } from './balancer.js';
import type { Ejector } from './ejection.js';
import { Endpoint } from './endpoint.js';
import { ExposurePolicy } from './exposure.js';
import { GatewayLogIds } from './log-ids.js';
import type { Upstream } from './upstream.js';

export interface Route {
  readonly grpcService: string;
  readonly serviceId: string;
  /** Every instance of the service that lists this gRPC service, whatever its status. */
  readonly endpoints: readonly Endpoint[];
  readonly balancer: Balancer;
  /** The service's `lb.*` settings (from its instances' registration metadata). */
  readonly settings: BalancingSettings;
}

/** Makes the balancer of a service's policy; round robin unless told otherwise. */
export type BalancerFactory = (serviceId: string, settings: BalancingSettings) => Balancer;

const DEFAULT_SETTINGS: InstanceSettings = (() => {
  const parsed = parseInstanceMetadata({});
  if (!parsed.ok) throw new Error('default balancing settings do not parse');
  return parsed.settings;
})();

/**
 * Identifies a service's balancer: kept across rebuilds while the service and all of
 * its `lb.*` settings stay the same (every field, so a new one needs no change here).
 */
function settingsKey(serviceId: string, settings: BalancingSettings): string {
  return `${serviceId}|${JSON.stringify(settings)}`;
}

export class RoutingTable {
  private routes = new Map<string, Route>();
  /** By registry key; endpoints keep their session and ejection state across rebuilds. */
  private readonly endpoints = new Map<string, Endpoint>();
  /** By gRPC service name, so a rebuild does not restart the rotation. */
  private readonly balancers = new Map<string, { key: string; balancer: Balancer }>();
  private rebuildQueued = false;
  private readonly unsubscribe: () => void;

  constructor(
    view: LocalView<ServiceInstance>,
    private readonly upstreamFor: (address: string) => Upstream,
    private readonly ejector: Ejector,
    private readonly logger: Logger,
    private readonly balancerFor: BalancerFactory = () => new RoundRobin(),
    /** Services left out of the table: calls to them are refused, never forwarded. */
    readonly exposure = new ExposurePolicy({ exposeInternal: [] }),
  ) {
    this.unsubscribe = view.onChange((change) => this.apply(change));
    for (const [key, instance] of view.entries())
      this.apply({ op: 'put', key, value: instance, revision: 0 });
  }

  route(grpcService: string): Route | undefined {
    return this.routes.get(grpcService);
  }

  get size(): number {
    return this.routes.size;
  }

  close(): void {
    this.unsubscribe();
    for (const endpoint of this.endpoints.values()) this.drop(endpoint);
    this.endpoints.clear();
    this.routes = new Map();
  }

  private apply(change: ViewChange<ServiceInstance>): void {
    const existing = this.endpoints.get(change.key);
    if (change.op === 'remove') {
      if (existing) this.drop(existing);
      this.endpoints.delete(change.key);
    } else if (existing && existing.instance.address === change.value.address) {
      existing.update(change.value);
    } else {
      if (existing) this.drop(existing);
      const endpoint = new Endpoint(change.value, this.upstreamFor(change.value.address));
      this.endpoints.set(change.key, endpoint);
      endpoint.upstream.warm();
    }
    // A burst of changes (the initial load) costs one rebuild.
    if (!this.rebuildQueued) {
      this.rebuildQueued = true;
      queueMicrotask(() => this.rebuild());
    }
  }

  /** An instance that left (or moved address) finishes its calls, then its session closes. */
  private drop(endpoint: Endpoint): void {
    this.ejector.forget(endpoint);
    endpoint.upstream.close();
  }

  private rebuild(): void {
    this.rebuildQueued = false;
    const byName = new Map<string, Map<string, Endpoint[]>>();
    for (const endpoint of this.endpoints.values()) {
      for (const name of endpoint.instance.grpcServices) {
        let services = byName.get(name);
        if (!services) {
          services = new Map();
          byName.set(name, services);
        }
        const list = services.get(endpoint.serviceId);
        if (list) list.push(endpoint);
        else services.set(endpoint.serviceId, [endpoint]);
      }
    }
    const routes = new Map<string, Route>();
    for (const [name, services] of byName) {
      if (!this.exposure.of(name).routed) continue;
      // Two services claiming one gRPC name is a registration mistake: route to one,
      // deterministically (the same on every replica), and say so.
      const [serviceId, ...others] = [...services.keys()].sort();
      if (others.length > 0) {
        this.logger.warn(
          { msgId: GatewayLogIds.serviceNameClash, grpcService: name, serviceId, ignored: others },
          'several services register one gRPC service name: routing to the first by id',
        );
      }
      const endpoints = services.get(serviceId!)!.sort((a, b) => (a.id < b.id ? -1 : 1));
      // Instances of a service share their lb.* settings; the first by id decides.
      const parsed = parseInstanceMetadata(endpoints[0]!.instance.metadata);
      const settings = (parsed.ok ? parsed.settings : DEFAULT_SETTINGS).lb;
      const key = settingsKey(serviceId!, settings);
      let held = this.balancers.get(name);
      if (held?.key !== key) {
        held = { key, balancer: this.balancerFor(serviceId!, settings) };
        this.balancers.set(name, held);
      }
      routes.set(name, {
        grpcService: name,
        serviceId: serviceId!,
        endpoints,
        balancer: held.balancer,
        settings,
      });
    }
    for (const name of this.balancers.keys()) if (!routes.has(name)) this.balancers.delete(name);
    this.routes = routes;
    this.logger.info(
      { msgId: GatewayLogIds.routesChanged, routes: routes.size, instances: this.endpoints.size },
      'routing table rebuilt',
    );
  }
}

/** Why no instance of a route can take a call, for the UNAVAILABLE message. */
export function describeUnavailable(route: Route): string {
  const counts = new Map<string, number>();
  for (const endpoint of route.endpoints) {
    const state = endpoint.state;
    counts.set(state, (counts.get(state) ?? 0) + 1);
  }
  const states = [...counts].map(([state, n]) => `${n} ${state}`).join(', ');
  const n = route.endpoints.length;
  const subject =
    n === 1
      ? `the only instance of ${route.serviceId} is`
      : `all ${n} instances of ${route.serviceId} are`;
  return `${subject} down (${states}); retry later or check the service's health`;
}
