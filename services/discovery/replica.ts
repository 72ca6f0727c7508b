/**
 * One discovery replica: the Registry gRPC service, its lease expiry, health checker,
 * static definitions and self-announcement, on a bus connection. Replicas hold no
 * state another needs; any number run side by side.
 */

import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { Bus, RegistryBucket } from '../../bus/index.js';
import { type AdminServer, startAdmin } from '../common/admin.js';
import { type BusSettings, busOptions } from '../common/bus-settings.js';
import { type ServerTls, serverCredentials } from '../common/server-tls.js';
import { type AccessOptions, RegistryAccess } from './access.js';
import { AddressPolicy, type AddressRules } from './addresses.js';
import { Announcer } from './announcer.js';
import { DiscoveryEventKind, DiscoveryEvents } from './events.js';
import { HealthChecker, type HealthCheckOptions } from './health-checker.js';
import { LeaseExpiry } from './lease-expiry.js';
import { LogIds } from './log-ids.js';
import { Registry } from './registry.js';
import { DEFAULT_SELF_PRESERVATION, type SelfPreservationPolicy } from './self-preservation.js';
import { REGISTRY_SERVICE, registryDefinition, registryHandlers } from './service.js';
import { loadStaticDefinitions, StaticPublisher } from './static-definitions.js';
import { DEFAULT_LEASES, type LeaseBounds } from './validation.js';

export interface ReplicaOptions {
  readonly replicaId: string;
  readonly bus: BusSettings;
  /** host:port to listen on for gRPC; port 0 picks a free one. */
  readonly grpcListen: string;
  /** Address other replicas and clients reach this one at; default: the bound address. */
  readonly advertiseAddress?: string;
  readonly adminHost?: string;
  readonly adminPort: number;
  readonly staticFile?: string;
  readonly leases?: Partial<LeaseBounds>;
  /** This replica's own lease in the registry (default: the default lease). */
  readonly replicaLeaseSeconds?: number;
  readonly expiryCheckIntervalMs?: number;
  readonly expirySettleMs?: number;
  readonly selfPreservation?: Partial<SelfPreservationPolicy>;
  readonly health?: Partial<Omit<HealthCheckOptions, 'replicaId'>>;
  /** TLS on the gRPC port (default plaintext). */
  readonly tls?: ServerTls;
  /** Who may call the Registry and what for. */
  readonly access: AccessOptions;
  /** Where instances may be registered (default: loopback and private networks). */
  readonly addresses?: AddressRules;
  readonly logger: Logger;
}

export class DiscoveryReplica {
  private ready = false;
  private stopping = false;
  /** Settles once the registry view is loaded and the replica serves (health SERVING). */
  loaded: Promise<void> = Promise.resolve();

  private constructor(
    readonly replicaId: string,
    readonly grpcAddress: string,
    private readonly admin: AdminServer,
    private readonly bus: Bus,
    private readonly server: grpc.Server,
    private readonly health: HealthImplementation,
    private readonly parts: {
      readonly registry: Registry;
      readonly expiry: LeaseExpiry;
      readonly checker: HealthChecker;
      readonly announcer: Announcer;
      readonly statics: StaticPublisher;
      readonly events: DiscoveryEvents;
      readonly endWatches: () => void;
    },
    private readonly logger: Logger,
  ) {}

  get adminPort(): number {
    return this.admin.port;
  }

  get registry(): Registry {
    return this.parts.registry;
  }

  get healthChecker(): HealthChecker {
    return this.parts.checker;
  }

  get selfPreserving(): boolean {
    return this.parts.expiry.preserving;
  }

  /**
   * Connects, provisions and binds the servers (health NOT_SERVING, `/readyz` 503);
   * `loaded` settles when the view is loaded and the replica is SERVING.
   */
  static async start(options: ReplicaOptions): Promise<DiscoveryReplica> {
    const { replicaId, logger } = options;
    logger.info({ msgId: LogIds.starting, replicaId }, 'discovery replica starting');
    const leases = { ...DEFAULT_LEASES, ...options.leases };
    const addresses = new AddressPolicy(options.addresses);
    const access = new RegistryAccess(options.access);
    const statics = options.staticFile
      ? await loadStaticDefinitions(options.staticFile, leases.defaultSeconds, addresses)
      : [];
    const bus = await Bus.connect(busOptions(options.bus, `discovery-${replicaId}`, logger));
    try {
      await bus.checkProvisioned();
      const store = await bus.store(RegistryBucket);
      const view = store.view();
      const events = new DiscoveryEvents(replicaId, bus.publisher(), logger);
      const registry: Registry = new Registry({
        store,
        view,
        events,
        leases,
        addresses,
        logger,
        heldCopy: (serviceId, instanceId) => expiry.heldCopy(serviceId, instanceId),
      });
      const expiry = new LeaseExpiry(
        view,
        registry,
        events,
        {
          replicaId,
          checkIntervalMs: options.expiryCheckIntervalMs ?? 1000,
          settleMs: options.expirySettleMs ?? 1000,
          selfPreservation: {
            ...DEFAULT_SELF_PRESERVATION,
            windowMs: leases.defaultSeconds * 1000,
            ...options.selfPreservation,
          },
        },
        logger,
      );

      let replica: DiscoveryReplica | undefined;
      const health = new HealthImplementation({
        '': 'NOT_SERVING',
        [REGISTRY_SERVICE]: 'NOT_SERVING',
      });
      const server = new grpc.Server();
      const service = registryHandlers(
        registry,
        access,
        replicaId,
        () => replica?.ready ?? false,
        logger,
      );
      server.addService(registryDefinition, service.handlers);
      health.addToServer(server);
      const credentials = await serverCredentials(options.tls);
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(options.grpcListen, credentials, (e, p) => (e ? reject(e) : resolve(p))),
      );
      if (access.empty) {
        logger.warn(
          { msgId: LogIds.nobodyGranted, replicaId },
          'no identity is granted anything: every Registry call will be refused (see grants in services/discovery/README.md)',
        );
      }
      if (!options.tls && options.access.tokens.length > 0) {
        logger.warn(
          { msgId: LogIds.plaintextTokens, replicaId },
          'service tokens are accepted without TLS: use this only on loopback or a trusted network',
        );
      }
      const host = options.grpcListen.slice(0, options.grpcListen.lastIndexOf(':'));
      const grpcAddress = options.advertiseAddress ?? `${host}:${port}`;
      const admin = await startAdmin({
        host: options.adminHost,
        port: options.adminPort,
        notReady: () => (replica?.ready ? undefined : 'registry view not loaded'),
      });
      const announcer = new Announcer(
        registry,
        replicaId,
        grpcAddress,
        options.replicaLeaseSeconds ?? leases.defaultSeconds,
        logger,
      );
      const checker = new HealthChecker(
        registry,
        { replicaId, intervalMs: 2000, timeoutMs: 1000, failureThreshold: 3, ...options.health },
        logger,
      );
      replica = new DiscoveryReplica(
        replicaId,
        grpcAddress,
        admin,
        bus,
        server,
        health,
        {
          registry,
          expiry,
          checker,
          announcer,
          statics: new StaticPublisher(registry, statics, logger),
          events,
          endWatches: service.endWatches,
        },
        logger,
      );
      replica.loaded = replica.load(view.ready);
      return replica;
    } catch (error) {
      logger.error(
        { msgId: LogIds.startFailed, replicaId, err: error },
        'discovery replica failed to start',
      );
      await bus.close();
      throw error;
    }
  }

  private async load(viewReady: Promise<void>): Promise<void> {
    await viewReady;
    if (this.stopping) return;
    const { expiry, announcer, statics, checker, events } = this.parts;
    expiry.start();
    await announcer.start();
    await statics.start();
    checker.start();
    this.ready = true;
    this.health.setStatus('', 'SERVING');
    this.health.setStatus(REGISTRY_SERVICE, 'SERVING');
    this.logger.info(
      {
        msgId: LogIds.ready,
        replicaId: this.replicaId,
        grpcAddress: this.grpcAddress,
        adminPort: this.admin.port,
        instances: this.registry.view.size,
      },
      'discovery replica ready',
    );
    void events.emit(
      DiscoveryEventKind.REPLICA_STARTED,
      {},
      `serving at ${this.grpcAddress}`,
      String(Date.now()),
    );
  }

  /** Leaves the replica set, ends watches, closes servers and the bus. */
  async stop(): Promise<void> {
    this.logger.info(
      { msgId: LogIds.stopping, replicaId: this.replicaId },
      'discovery replica stopping',
    );
    this.ready = false;
    this.stopping = true;
    this.health.setStatus('', 'NOT_SERVING');
    this.health.setStatus(REGISTRY_SERVICE, 'NOT_SERVING');
    const { checker, statics, expiry, announcer, events, endWatches } = this.parts;
    checker.stop();
    await statics.stop();
    await expiry.stop();
    await announcer.stop();
    await events.emit(DiscoveryEventKind.REPLICA_STOPPED, {}, '', String(Date.now()));
    endWatches();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => this.server.forceShutdown(), 2000);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    await this.admin.close();
    this.registry.view.stop();
    await this.bus.close();
    this.logger.info(
      { msgId: LogIds.stopped, replicaId: this.replicaId },
      'discovery replica stopped',
    );
  }
}
