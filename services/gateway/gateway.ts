/**
 * A gateway replica's lifecycle: it builds its parts (the client listener, the routing
 * table fed by the registry's local view, admission and forwarding of calls, gRPC
 * health), opens the listener and the admin endpoint, is ready once its views are
 * loaded, and `stop()` is the graceful shutdown: GOAWAY to clients, calls in flight
 * finish within a timeout, GATEWAY_STOPPING is published.
 */
import { readFile } from 'node:fs/promises';
import type { SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import {
  AffinityBucket,
  type AffinityPreference,
  type Bus,
  type KvStore,
  type LocalView,
  RegistryBucket,
  type ServiceInstance,
} from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { type AdminServer, startAdmin } from '../common/admin.js';
import type { BalancingSettings } from '../common/lb-metadata.js';
import { sleep } from '../common/sleep.js';
import type { SelfRegistration } from '../discovery/self-registration.js';
import { Admission } from './admission.js';
import { AffinityTable, affinityViewOptions, type Clock } from './affinity.js';
import { AffinityReleases } from './affinity-release.js';
import { type Balancer, HeaderBalancer, RoundRobin, UserBalancer } from './balancer.js';
import { ClientListener } from './client-listener.js';
import type { GatewayConfig } from './config.js';
import { Ejector } from './ejection.js';
import { GatewayEvents } from './events.js';
import { ExposurePolicy } from './exposure.js';
import { Forwarder } from './forwarding.js';
import { Health } from './health.js';
import { Identities } from './identity.js';
import { GatewayLogIds } from './log-ids.js';
import { registerGauges } from './metrics.js';
import { registerGateway } from './registration.js';
import { RoutingTable } from './routing-table.js';
import { Upstream, type UpstreamOptions, upstreamStats } from './upstream.js';

const { Kind } = halyard.gateway.v1.GatewayEvent;
/** The STOPPING event is best effort within this bound: the bus may be the thing that is down. */
const STOPPING_EVENT_BOUND_MS = 2000;

export interface GatewayOptions {
  /** The sticky preferences' clock (`Date.now`): tests move it instead of waiting. */
  readonly now?: Clock;
  /**
   * This process is worker number `worker` of a gateway of several (workers.ts): the
   * primary serves the admin port and registers in discovery, and the listener opens
   * only once the views are loaded, so that the primary hands connections only to
   * workers that route them.
   */
  readonly worker?: number;
}

/** What `Gateway.start` loads before the gateway is built: stores, keys, certificates. */
interface GatewayParts extends GatewayOptions {
  readonly config: GatewayConfig;
  readonly bus: Bus;
  readonly logger: Logger;
  readonly identities: Identities;
  readonly registry: LocalView<ServiceInstance>;
  readonly affinityStore: KvStore<AffinityPreference>;
  /** Internal TLS towards instances; undefined: h2c. */
  readonly upstreamTls: SecureContextOptions | undefined;
  /** The listener's certificate and key; undefined: h2c. */
  readonly listenerTls: { readonly cert: Buffer; readonly key: Buffer } | undefined;
}

export class Gateway {
  readonly config: GatewayConfig;
  readonly affinity: AffinityTable;
  readonly table: RoutingTable;
  readonly forwarder: Forwarder;
  readonly admission: Admission;
  private readonly logger: Logger;
  private readonly events: GatewayEvents;
  private readonly registry: LocalView<ServiceInstance>;
  private readonly affinityView: LocalView<AffinityPreference>;
  private readonly listener: ClientListener;
  private readonly worker: number | undefined;
  private admin: AdminServer | undefined;
  /** This replica as service `halyard-gateway` in the registry, when configured. */
  private registration: SelfRegistration | undefined;
  private stopping = false;
  private loaded = false;
  /** Settles (never rejects) once the views are loaded (true) or cannot be (false). */
  private loading: Promise<boolean> | undefined;

  /**
   * Starts serving; calls get UNAVAILABLE until the registry and affinity views are
   * loaded (see `ready`).
   */
  static async start(
    config: GatewayConfig,
    bus: Bus,
    logger: Logger,
    options: GatewayOptions = {},
  ): Promise<Gateway> {
    const identities = await Identities.load({
      meshSecret: config.affinity.meshSecret,
      ...config.affinity.jwt,
    });
    const unchecked = identities.uncheckedClaims;
    if (identities.configured && unchecked.length > 0) {
      logger.warn(
        { msgId: GatewayLogIds.jwtClaimsUnchecked, unchecked },
        'bearer tokens are not checked for these claims: a token another service was given for itself is accepted here (set affinity.jwt.issuer and affinity.jwt.audience)',
      );
    }
    const internalTls = config.upstream.tls;
    const upstreamTls = internalTls && {
      ca: await readFile(internalTls.caFile),
      ...(internalTls.certFile ? { cert: await readFile(internalTls.certFile) } : {}),
      ...(internalTls.keyFile ? { key: await readFile(internalTls.keyFile) } : {}),
    };
    const listenerTls = config.tls && {
      cert: await readFile(config.tls.certFile),
      key: await readFile(config.tls.keyFile),
    };
    const gateway = new Gateway({
      ...options,
      config,
      bus,
      logger,
      identities,
      registry: (await bus.store(RegistryBucket)).view(),
      affinityStore: await bus.store(AffinityBucket),
      upstreamTls,
      listenerTls,
    });
    await gateway.listen();
    return gateway;
  }

  /** Builds the parts in dependency order; nothing is served until `listen`. */
  private constructor(parts: GatewayParts) {
    const { config, bus, logger, identities } = parts;
    this.config = config;
    this.logger = logger;
    this.worker = parts.worker;
    this.events = new GatewayEvents(bus.publisher(), config.id, logger);
    this.registry = parts.registry;
    // The table holds the preferences compactly; the view only feeds it.
    this.affinityView = parts.affinityStore.view(affinityViewOptions);
    this.affinity = new AffinityTable(
      this.affinityView,
      parts.affinityStore,
      { gatewayId: config.id, connected: () => bus.connected, now: parts.now },
      logger,
    );
    const ejector = new Ejector(
      {
        consecutiveFailures: config.ejection.consecutiveFailures,
        baseMs: config.ejection.baseSeconds * 1000,
        maxMs: config.ejection.maxSeconds * 1000,
      },
      (kind, endpoint, ejectionSeconds, reason) =>
        this.events.publish(kind, {
          serviceId: endpoint.serviceId,
          instanceId: endpoint.id,
          ejectionSeconds,
          reason,
        }),
      logger,
    );
    const upstreamOptions: UpstreamOptions = {
      windowBytes: config.limits.windowBytes,
      reconnect: { baseMs: config.upstream.backoffBaseMs, maxMs: config.upstream.backoffMaxMs },
      ...(parts.upstreamTls ? { tls: parts.upstreamTls } : {}),
    };
    this.table = new RoutingTable(
      this.registry,
      (address) => new Upstream(address, upstreamOptions, logger),
      ejector,
      logger,
      (serviceId, settings) => this.balancerFor(serviceId, settings, identities),
      new ExposurePolicy(config.routing),
    );
    this.forwarder = new Forwarder({
      gatewayId: config.id,
      retryBufferBytes: config.retry.bufferBytes,
      maxAttempts: config.retry.maxAttempts,
      retryBudget: { ratio: config.retry.budgetRatio, minConcurrent: config.retry.minConcurrent },
      ejector,
      releases: new AffinityReleases(this.affinity, logger),
      logger,
    });
    this.admission = new Admission({
      gatewayId: config.id,
      maxConcurrentCalls: config.limits.maxConcurrentCalls,
      maxTimeoutMs: config.limits.maxTimeoutMs,
      maxHeaderListBytes: config.limits.maxHeaderListBytes,
      table: this.table,
      health: new Health(this.table, () => this.notReady() === undefined, config.id),
      identities,
      notReady: () => this.notReady(),
      forwarder: this.forwarder,
      logger,
    });
    this.listener = new ClientListener({
      limits: config.limits,
      tls: parts.listenerTls,
      onStream: (stream, headers) => this.admission.handle(stream, headers),
      logger,
    });
    registerGauges({
      activeCalls: () => this.forwarder.active,
      upstreamSessions: () => upstreamStats.sessions,
      ejectedInstances: () => ejector.ejected,
      affinityPreferences: () => this.affinity.size,
    });
  }

  /**
   * Opens the listener and the admin port, the views load meanwhile; a worker opens its
   * listener once they are loaded instead, and has no admin port.
   */
  private async listen(): Promise<void> {
    const { config } = this;
    if (this.worker !== undefined) {
      this.loading = this.load();
      // `ready()` reports a failure to listen; the worker's process awaits it.
      this.loading.catch(() => {});
      return;
    }
    await this.openListener();
    this.admin = await startAdmin({
      host: config.admin.host,
      port: config.admin.port,
      notReady: () => this.notReady(),
    });
    this.logListening();
    this.loading = this.load();
  }

  /** True once the views are loaded (and a worker listens); false when they will not be. */
  private async load(): Promise<boolean> {
    const { logger } = this;
    try {
      await Promise.all([this.registry.ready, this.affinityView.ready]);
    } catch (error) {
      // Stopped before the views loaded: they were stopped on purpose.
      if (!this.stopping) {
        logger.error(
          { msgId: GatewayLogIds.viewsFailed, err: error },
          'registry or affinity view failed to load: this gateway stays not ready',
        );
      }
      return false;
    }
    if (this.worker !== undefined) {
      if (this.stopping) return false;
      await this.openListener();
      this.logListening();
    }
    this.loaded = true;
    logger.info(
      { msgId: GatewayLogIds.ready, routes: this.table.size, preferences: this.affinity.size },
      'registry and affinity views loaded: ready',
    );
    const worker = this.worker === undefined ? '' : `worker ${this.worker}: `;
    void this.events.publish(Kind.GATEWAY_STARTED, {
      reason: `${worker}registry and affinity views loaded`,
    });
    this.register();
    return true;
  }

  private openListener(): Promise<void> {
    return this.listener.listen(this.config.listen.port, this.config.listen.host);
  }

  private logListening(): void {
    this.logger.info(
      {
        msgId: GatewayLogIds.listening,
        port: this.port,
        adminPort: this.adminPort,
        tls: !!this.config.tls,
      },
      'gateway listening',
    );
  }

  /** Into the registry once calls are routed, so that clients find only ready gateways. */
  private register(): void {
    // A worker's primary registers the gateway, once.
    if (this.worker !== undefined || this.stopping) return;
    this.registration = registerGateway(this.config, this.port, this.logger);
  }

  private balancerFor(
    serviceId: string,
    settings: BalancingSettings,
    identities: Identities,
  ): Balancer {
    if (settings.policy === 'header') return new HeaderBalancer(serviceId, settings);
    if (settings.policy === 'user') {
      if (!identities.configured) {
        this.logger.warn(
          { msgId: GatewayLogIds.identityUnconfigured, serviceId },
          'service asks for lb.policy=user but this gateway has no mesh secret or JWT key: its users get UNAUTHENTICATED',
        );
      }
      return new UserBalancer(serviceId, settings, this.affinity, (...moved) =>
        this.userMoved(...moved),
      );
    }
    return new RoundRobin();
  }

  private userMoved(serviceId: string, userKey: string, from: string, to: string): void {
    this.logger.info(
      { msgId: GatewayLogIds.affinityMoved, serviceId, instanceId: from, toInstanceId: to },
      'sticky user moved off an instance that is down',
    );
    void this.events.publish(Kind.AFFINITY_MOVED, {
      serviceId,
      instanceId: from,
      toInstanceId: to,
      userKey,
      reason: 'preferred instance down (lb.whenDown=failover)',
    });
  }

  get port(): number {
    return this.listener.port;
  }

  get adminPort(): number {
    return this.admin?.port ?? 0;
  }

  /** Why this replica should not get traffic, or undefined when it should. */
  notReady(): string | undefined {
    if (this.stopping) return 'is stopping';
    if (!this.loaded) return 'is starting: the registry and affinity views are not loaded yet';
    return undefined;
  }

  /**
   * Resolves when the registry and affinity views are loaded and calls are routed;
   * rejects when they will not be (the gateway stopped first, a view failed, or a
   * worker could not listen).
   */
  async ready(): Promise<void> {
    if (!(await this.loading)) throw new Error(`gateway ${this.config.id} ${this.notReady()}`);
  }

  /** Graceful stop: GOAWAY, in-flight calls finish (up to the stop timeout), then close. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const timeoutMs = this.config.stopTimeoutSeconds * 1000;
    this.logger.info(
      { msgId: GatewayLogIds.stopping, activeCalls: this.forwarder.active, timeoutMs },
      'stopping: GOAWAY sent, calls in flight finish',
    );
    const stoppingEvent = this.events.publish(Kind.GATEWAY_STOPPING, { reason: 'stop requested' });
    // Out of the registry (DRAINING, then deregistered) while the calls in flight finish.
    const deregistered = this.registration?.stop();
    const drained = await this.listener.drain(timeoutMs);
    if (!drained) {
      this.logger.warn(
        { msgId: GatewayLogIds.stopTimedOut, activeCalls: this.forwarder.active },
        'stop timeout: cancelling calls still in flight',
      );
    }
    await this.listener.close();
    this.table.close();
    this.registry.stop();
    this.affinity.close();
    this.affinityView.stop();
    await this.admin?.close();
    await deregistered;
    const bound = new AbortController();
    await Promise.race([
      stoppingEvent,
      sleep(STOPPING_EVENT_BOUND_MS, bound.signal).catch(() => {}),
    ]);
    bound.abort();
    this.logger.info({ msgId: GatewayLogIds.stopped }, 'gateway stopped');
  }
}
