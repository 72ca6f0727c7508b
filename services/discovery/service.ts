/**
 * The `halyard.discovery.v1.Registry` gRPC service over a Registry: maps requests
 * to it after identifying and authorizing the caller (access.ts), its errors to gRPC
 * statuses, and counts every call and every refusal.
 */

import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ServiceInstance, ViewChange } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import type { Caller } from '../common/callers.js';
import { serviceDefinition } from '../common/grpc.js';
import type { RegistryAccess } from './access.js';
import { RegistryError, refusalReason } from './errors.js';
import { LogIds } from './log-ids.js';
import { discoveryMetrics } from './metrics.js';
import type { Registry } from './registry.js';
import { checkServiceFilter, validateRef } from './validation.js';

const WatchKind = halyard.discovery.v1.WatchResponse.Kind;
type Req = Record<string, unknown>;

/** The Registry's gRPC service name (proto/halyard/discovery/v1). */
export const REGISTRY_SERVICE = 'halyard.discovery.v1.Registry';
export const registryDefinition = serviceDefinition(REGISTRY_SERVICE);

export function registryHandlers(
  registry: Registry,
  access: RegistryAccess,
  replicaId: string,
  isReady: () => boolean,
  logger: Logger,
): { handlers: grpc.UntypedServiceImplementation; endWatches(): void } {
  const watches = new Set<grpc.ServerWritableStream<Req, object>>();
  const fail = (
    method: string,
    error: unknown,
    caller: Caller | undefined,
  ): Partial<grpc.StatusObject> => {
    if (error instanceof RegistryError) {
      const reason = refusalReason(error);
      if (reason !== undefined) {
        const field = error.field ?? '';
        discoveryMetrics.rejected.inc({ replica: replicaId, method, reason, field });
        // The caller's identity, never its credential.
        logger.warn(
          {
            msgId: LogIds.rejected,
            method,
            reason,
            field,
            caller: caller?.identity,
            message: error.message,
          },
          'request refused',
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
  /** The instance a write is about, checked before the caller's grant for it. */
  const writeFor = (caller: Caller, request: Req) => {
    const ref = validateRef(request.instance as Req);
    access.requireService(caller, ref.serviceId);
    return ref;
  };

  /** A call's caller is identified and authorized before anything is read or written. */
  function unary(
    method: string,
    authorize: (caller: Caller, request: Req) => void,
    run: (request: Req) => Promise<object> | object,
  ) {
    return async (
      call: grpc.ServerUnaryCall<Req, object>,
      callback: grpc.sendUnaryData<object>,
    ) => {
      let caller: Caller | undefined;
      try {
        caller = access.identify(call);
        authorize(caller, call.request);
        const response = await run(call.request);
        count(method, grpc.status.OK);
        callback(null, response);
      } catch (error) {
        const failure = fail(method, error, caller);
        count(method, failure.code ?? grpc.status.UNKNOWN);
        callback(failure);
      }
    };
  }

  const handlers: grpc.UntypedServiceImplementation = {
    register: unary(
      'Register',
      (caller, r) => {
        const { serviceId } = writeFor(caller, r);
        const names = (r.instance as Req).grpcServices;
        access.requireClaims(caller, serviceId, Array.isArray(names) ? names : []);
      },
      (r) => registry.register(r.instance as Req),
    ),
    renew: unary('Renew', writeFor, async (r) => ({
      expiresAtMs: await registry.renew(r.instance as Req),
    })),
    deregister: unary('Deregister', writeFor, async (r) => {
      await registry.deregister(r.instance as Req);
      return {};
    }),
    setStatus: unary('SetStatus', writeFor, async (r) => ({
      instance: await registry.setStatus(r.instance as Req, r.status),
    })),
    list: unary(
      'List',
      (caller) => access.requireRead(caller),
      (r) => {
        requireView();
        return { instances: registry.list(String(r.serviceId ?? '')) };
      },
    ),
    watch: (call: grpc.ServerWritableStream<Req, object>) => {
      let serviceId: string;
      let caller: Caller | undefined;
      try {
        caller = access.identify(call);
        access.requireRead(caller);
        requireView();
        serviceId = checkServiceFilter(String(call.request.serviceId ?? ''));
      } catch (error) {
        const failure = fail('Watch', error, caller);
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
