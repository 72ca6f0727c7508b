/**
 * A cache replica: the gRPC `halyard.cache.v1.Cache` API, `grpc.health.v1.Health`,
 * the admin endpoint (/healthz, /readyz, /metrics) and the record-limit trim. Ready — in gRPC
 * health and /readyz — only once the local view of the bucket is loaded.
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { type Bus, CacheBucket, type CacheEntry } from '../../bus/index.js';
import { type AdminServer, startAdmin } from '../common/admin.js';
import { serviceDefinition } from '../common/grpc.js';
import { serverCredentials } from '../common/server-tls.js';
import { CACHE_SERVICE } from './client.js';
import type { CacheConfig } from './config.js';
import { Identities } from './identity.js';
import { CacheLogIds } from './log-ids.js';
import { cacheMetrics } from './metrics.js';
import { cacheRegistration } from './registration.js';
import { CacheError, DEFAULT_POLICY, type Limits, type NamespacePolicy } from './rules.js';
import { type CacheChange, CacheState } from './state.js';

export { CACHE_SERVICE };

/** Room a CacheEntry needs beside its value: namespace, key, timestamps, field tags. */
const ENTRY_OVERHEAD_BYTES = 256;

const WATCH_KIND = { put: 1, deleted: 2 } as const;
/** Changes a Watch stream may have queued for a caller that is not reading. */
const MAX_WATCH_BACKLOG = 10_000;

export interface CacheServerOptions {
  readonly config: CacheConfig;
  /** Connected; the server provisions the bucket and never closes it. */
  readonly bus: Bus;
  readonly logger: Logger;
}

export class CacheServer {
  private constructor(
    readonly grpcPort: number,
    readonly adminPort: number,
    /** Resolves once the view is loaded and the replica reports SERVING. */
    readonly ready: Promise<void>,
    private readonly shutdown: () => Promise<void>,
  ) {}

  static async start(options: CacheServerOptions): Promise<CacheServer> {
    const { config, bus, logger } = options;
    logger.info({ msgId: CacheLogIds.starting, id: config.id }, 'cache replica starting');
    // The bus retries what a forming cluster or a concurrent provisioning makes fail for a while.
    await bus.checkProvisioned();
    const store = await bus.store(CacheBucket);
    const view = store.view();
    const limits = effectiveLimits(config, bus.server.maxPayload, logger);
    const policyOf = (namespace: string): NamespacePolicy =>
      config.namespaces[namespace] ?? config.defaults ?? DEFAULT_POLICY;
    const state = new CacheState(view, store, {
      limits,
      policyOf,
      logger,
    });
    const identities = new Identities(config.tokens);
    const openWatches = new Set<() => void>();

    const health = new HealthImplementation({ '': 'NOT_SERVING', [CACHE_SERVICE]: 'NOT_SERVING' });
    const server = new grpc.Server({
      // Room for the largest value allowed, so that an oversized one gets this service's
      // INVALID_ARGUMENT naming the limit rather than the transport's refusal.
      'grpc.max_receive_message_length': Math.max(
        4 * 1024 * 1024,
        2 * (limits.maxValueBytes + limits.maxKeyBytes),
      ),
    });
    health.addToServer(server);
    server.addService(
      serviceDefinition(CACHE_SERVICE),
      handlers(
        state,
        identities,
        openWatches,
        logger,
      ) as unknown as grpc.UntypedServiceImplementation,
    );
    const credentials = await serverCredentials(config.tls);
    const grpcPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${config.grpc.host}:${config.grpc.port}`, credentials, (error, port) =>
        error ? reject(error) : resolve(port),
      ),
    );
    if (!config.tls && config.tokens.length > 0) {
      logger.warn(
        { msgId: CacheLogIds.plaintextTokens, grpcPort },
        'service tokens are accepted without TLS: use this only on loopback or a trusted network',
      );
    }
    let isReady = false;
    const admin: AdminServer = await startAdmin({
      host: config.admin.host,
      port: config.admin.port,
      notReady: () => (isReady ? undefined : 'the local view of the cache bucket is loading'),
    });
    logger.info(
      {
        msgId: CacheLogIds.listening,
        grpcPort,
        adminPort: admin.port,
        tls: config.tls !== undefined,
        ...limits,
      },
      'cache replica listening',
    );

    const registration =
      config.discovery &&
      cacheRegistration(
        config.discovery,
        {
          instanceId: config.id,
          address: config.discovery.advertise ?? `${config.grpc.host}:${grpcPort}`,
          grpcService: CACHE_SERVICE,
          hostId: config.hostId,
        },
        logger,
      );
    const ready = view.ready.then(() => {
      isReady = true;
      health.setStatus('', 'SERVING');
      health.setStatus(CACHE_SERVICE, 'SERVING');
      logger.info({ msgId: CacheLogIds.ready }, 'cache replica ready');
      registration?.start();
    });
    ready.catch(() => {});

    const trimmer = setInterval(() => {
      if (!isReady) return;
      state
        .trim()
        .catch((error: Error) =>
          logger.warn(
            { msgId: CacheLogIds.trimFailed, err: error },
            'trimming namespaces over their record limit failed; the next round retries',
          ),
        );
    }, config.trim.intervalMs);
    trimmer.unref();

    const shutdown = async () => {
      logger.info({ msgId: CacheLogIds.stopping }, 'cache replica stopping');
      // Out of the registry first, while calls are still answered.
      await registration?.stop();
      isReady = false;
      health.setStatus('', 'NOT_SERVING');
      health.setStatus(CACHE_SERVICE, 'NOT_SERVING');
      clearInterval(trimmer);
      // In-flight calls finish; Watch streams would hold the server open, so end them.
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), 5000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
        for (const end of openWatches) end();
      });
      state.stop();
      view.stop();
      await admin.close();
      logger.info({ msgId: CacheLogIds.stopped }, 'cache replica stopped');
    };
    return new CacheServer(grpcPort, admin.port, ready, shutdown);
  }

  private closing: Promise<void> | undefined;

  /** Stops taking calls, lets in-flight ones finish, ends Watch streams; idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }
}

function effectiveLimits(config: CacheConfig, maxPayload: number | undefined, logger: Logger) {
  const limits: Limits = { ...config.limits };
  if (maxPayload === undefined) return limits;
  const room = maxPayload - limits.maxKeyBytes - ENTRY_OVERHEAD_BYTES;
  if (limits.maxValueBytes <= room) return limits;
  logger.warn(
    {
      msgId: CacheLogIds.valueLimitLowered,
      configured: limits.maxValueBytes,
      effective: room,
      serverMaxPayload: maxPayload,
    },
    'value limit lowered to fit the bus server’s max_payload (raise max_payload in the NATS config to allow more)',
  );
  return { ...limits, maxValueBytes: room };
}

type Unary<Req, Res> = (
  call: grpc.ServerUnaryCall<Req, Res>,
  callback: grpc.sendUnaryData<Res>,
) => void;

interface KeyRequest {
  key: string;
}
interface PutRequest {
  key: string;
  value: Uint8Array;
}
interface ListRequest {
  pageSize: number;
  pageToken: string;
}

function handlers(
  state: CacheState,
  identities: Identities,
  openWatches: Set<() => void>,
  logger: Logger,
) {
  const unary =
    <Req, Res>(method: string, run: (namespace: string, req: Req) => Res | Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => {
      (async () => run(identities.namespaceOf(call), call.request))().then(
        (response) => {
          cacheMetrics.requests.inc({ method, code: 'OK' });
          callback(null, response);
        },
        (error: unknown) => callback(fail(method, error, logger)),
      );
    };

  const get: Unary<KeyRequest, { entry: CacheEntry }> = unary('Get', (ns, req) => ({
    entry: state.get(ns, req.key),
  }));
  const create: Unary<PutRequest, { entry: CacheEntry }> = unary('Create', async (ns, req) => ({
    entry: await state.create(ns, req.key, req.value),
  }));
  const put: Unary<PutRequest, { entry: CacheEntry }> = unary('Put', async (ns, req) => ({
    entry: await state.put(ns, req.key, req.value),
  }));
  const del: Unary<KeyRequest, object> = unary('Delete', async (ns, req) => {
    await state.delete(ns, req.key);
    return {};
  });
  const list: Unary<ListRequest, object> = unary('List', (ns, req) =>
    state.list(ns, req.pageSize, req.pageToken),
  );
  const deleteAll: Unary<object, object> = unary('DeleteAll', async (ns) => ({
    deleted: await state.deleteAll(ns),
  }));

  const watch = (call: grpc.ServerWritableStream<object, object>) => {
    let namespace: string;
    try {
      namespace = identities.namespaceOf(call);
    } catch (error) {
      call.emit('error', fail('Watch', error, logger));
      return;
    }
    cacheMetrics.requests.inc({ method: 'Watch', code: 'OK' });
    const stop = state.watch(namespace, (change: CacheChange) => {
      if (call.writableLength >= MAX_WATCH_BACKLOG) {
        // A watcher that does not read must not make the replica buffer without bound.
        end();
        call.emit(
          'error',
          fail(
            'Watch',
            new CacheError(
              grpc.status.RESOURCE_EXHAUSTED,
              `watcher fell ${MAX_WATCH_BACKLOG} changes behind; watch again and List to resynchronise`,
              'slow_watcher',
            ),
            logger,
          ),
        );
        return;
      }
      call.write({ kind: WATCH_KIND[change.kind], entry: change.entry });
    });
    const end = () => {
      stop();
      openWatches.delete(close);
    };
    const close = () => {
      end();
      call.end();
    };
    openWatches.add(close);
    call.on('cancelled', end);
    call.on('close', end);
    call.on('error', end);
  };

  return { get, create, put, delete: del, list, deleteAll, watch };
}

/** A gRPC error for a failed call: refusals keep their status, the rest are UNAVAILABLE. */
function fail(method: string, error: unknown, logger: Logger): Partial<grpc.ServiceError> {
  if (error instanceof CacheError) {
    cacheMetrics.requests.inc({ method, code: grpc.status[error.code] });
    if (
      error.code !== grpc.status.NOT_FOUND &&
      error.code !== grpc.status.ALREADY_EXISTS &&
      error.code !== grpc.status.OK
    ) {
      cacheMetrics.rejected.inc({ reason: error.reason });
      logger.info(
        {
          msgId: CacheLogIds.rejected,
          method,
          code: grpc.status[error.code],
          reason: error.reason,
        },
        error.message,
      );
    }
    return Object.assign(new Error(error.message), { code: error.code, details: error.message });
  }
  cacheMetrics.requests.inc({ method, code: 'UNAVAILABLE' });
  const message = `cache write failed on the bus: ${(error as Error).message}; retry`;
  logger.error({ msgId: CacheLogIds.writeFailed, method, err: error }, message);
  return Object.assign(new Error(message), { code: grpc.status.UNAVAILABLE, details: message });
}
