/**
 * The `halyard.discovery.v1.Registry` gRPC service over a Registry: maps requests
 * to it, its errors to gRPC statuses, and counts every call and every rejection.
 */

import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ServiceInstance, ViewChange } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { serviceDefinition } from '../common/grpc.js';
import { RegistryError } from './errors.js';
import { LogIds } from './log-ids.js';
import { discoveryMetrics } from './metrics.js';
import type { Registry } from './registry.js';
import { checkServiceFilter } from './validation.js';

const WatchKind = halyard.discovery.v1.WatchResponse.Kind;
type Req = Record<string, unknown>;

export const registryDefinition = serviceDefinition('halyard.discovery.v1.Registry');

export function registryHandlers(
  registry: Registry,
  replicaId: string,
  isReady: () => boolean,
  logger: Logger,
): { handlers: grpc.UntypedServiceImplementation; endWatches(): void } {
  const watches = new Set<grpc.ServerWritableStream<Req, object>>();
  const fail = (method: string, error: unknown): Partial<grpc.StatusObject> => {
    if (error instanceof RegistryError) {
      if (error.field !== undefined) {
        discoveryMetrics.rejected.inc({ replica: replicaId, method, field: error.field });
        logger.warn(
          { msgId: LogIds.rejected, method, field: error.field, reason: error.message },
          'request rejected',
        );
      }
      return { code: error.code, details: error.message };
    }
    // The bus closed under the call (this replica is stopping): another replica can serve it.
    return {
      code: grpc.status.UNAVAILABLE,
      details: `discovery replica ${replicaId}: ${(error as Error).message}`,
    };
  };
  const count = (method: string, code: grpc.status) =>
    discoveryMetrics.requests.inc({ replica: replicaId, method, code: grpc.status[code] });
  const requireView = () => {
    if (!isReady()) {
      throw new RegistryError(
        grpc.status.UNAVAILABLE,
        `discovery replica ${replicaId} is still loading the registry; try another`,
      );
    }
  };

  function unary(method: string, run: (request: Req) => Promise<object> | object) {
    return async (
      call: grpc.ServerUnaryCall<Req, object>,
      callback: grpc.sendUnaryData<object>,
    ) => {
      try {
        const response = await run(call.request);
        count(method, grpc.status.OK);
        callback(null, response);
      } catch (error) {
        const failure = fail(method, error);
        count(method, failure.code ?? grpc.status.UNKNOWN);
        callback(failure);
      }
    };
  }

  const handlers: grpc.UntypedServiceImplementation = {
    register: unary('Register', (r) => registry.register(r.instance as Req)),
    renew: unary('Renew', async (r) => ({ expiresAtMs: await registry.renew(r.instance as Req) })),
    deregister: unary('Deregister', async (r) => {
      await registry.deregister(r.instance as Req);
      return {};
    }),
    setStatus: unary('SetStatus', async (r) => ({
      instance: await registry.setStatus(r.instance as Req, r.status),
    })),
    list: unary('List', (r) => {
      requireView();
      return { instances: registry.list(String(r.serviceId ?? '')) };
    }),
    watch: (call: grpc.ServerWritableStream<Req, object>) => {
      let serviceId: string;
      try {
        requireView();
        serviceId = checkServiceFilter(String(call.request.serviceId ?? ''));
      } catch (error) {
        const failure = fail('Watch', error);
        count('Watch', failure.code ?? grpc.status.UNKNOWN);
        call.emit('error', failure);
        return;
      }
      const matches = (i: ServiceInstance) => serviceId === '' || i.serviceId === serviceId;
      // Listen first, so nothing that happens while the snapshot is sent is missed.
      const unsubscribe = registry.view.onChange((change: ViewChange<ServiceInstance>) => {
        if (change.op === 'put' && matches(change.value)) {
          call.write({ kind: WatchKind.UPSERTED, instance: change.value });
        } else if (change.op === 'remove' && matches(change.previous)) {
          call.write({ kind: WatchKind.REMOVED, instance: change.previous });
        }
      });
      for (const instance of registry.list(serviceId))
        call.write({ kind: WatchKind.UPSERTED, instance });
      call.write({ kind: WatchKind.SYNCED });
      watches.add(call);
      const end = () => {
        watches.delete(call);
        unsubscribe();
      };
      call.once('cancelled', () => {
        count('Watch', grpc.status.CANCELLED);
        end();
      });
      call.once('close', end);
    },
  };
  return {
    handlers,
    /** Ends every open Watch (the replica is stopping); clients reconnect to another. */
    endWatches() {
      for (const call of watches) call.end();
      watches.clear();
    },
  };
}
