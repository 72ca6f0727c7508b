/**
 * The launcher's control verbs on two transports: the gRPC `Launcher` service and bus
 * request/reply on `halyard.ctl.launcher.<host>.<verb>` (and `.all.`, the fan-out).
 * Both call the same Controls and fail with the same gRPC status names. A gRPC caller
 * must prove an identity (client certificate or service token) granted the verb; on the
 * bus, who may send to the control subjects is the bus's own permissions.
 */
import {
  status as GrpcStatus,
  type Server,
  type ServerUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  type Bus,
  Codecs,
  type CommandResult,
  type ComponentRequest,
  type ControlCodecs,
  ControlError,
  type LauncherStatus,
  type Served,
  Subjects,
} from '../../bus/index.js';
import { type CallerCall, CallerError, Callers } from '../common/callers.js';
import { serviceDefinition } from '../common/grpc.js';
import { serverCredentials } from '../common/server-tls.js';
import type { ControlAccess } from './config.js';
import { LogIds } from './log-ids.js';
import { launcherMetrics } from './metrics.js';

export interface Controls {
  display(): LauncherStatus;
  start(request: ComponentRequest): Promise<CommandResult>;
  stop(request: ComponentRequest): Promise<CommandResult>;
  restart(request: ComponentRequest): Promise<CommandResult>;
  refresh(): Promise<CommandResult>;
}

type Verb = keyof Controls;

export const ControlCodecsOf = {
  display: { request: Codecs.displayRequest, reply: Codecs.launcherStatus },
  start: { request: Codecs.componentRequest, reply: Codecs.commandResult },
  stop: { request: Codecs.componentRequest, reply: Codecs.commandResult },
  restart: { request: Codecs.componentRequest, reply: Codecs.commandResult },
  refresh: { request: Codecs.refreshRequest, reply: Codecs.commandResult },
} as const satisfies Record<Verb, ControlCodecs<object, object>>;

const VERBS = Object.keys(ControlCodecsOf) as Verb[];

/** The grant each verb needs; `control` includes `read`. */
const NEEDS: Record<Verb, 'read' | 'control'> = {
  display: 'read',
  start: 'control',
  stop: 'control',
  restart: 'control',
  refresh: 'control',
};

/** Why a gRPC call was refused, for the refusals counter. */
type RefusalReason = CallerError['reason'] | 'not_granted';

class Refusal extends Error {
  constructor(
    readonly code: GrpcStatus,
    message: string,
    readonly reason: RefusalReason,
  ) {
    super(message);
  }
}

/** Who may call which verb of the gRPC API: the config's tokens, certificates and grants. */
export class ControlGuard {
  private readonly callers: Callers;

  constructor(
    private readonly access: ControlAccess,
    private readonly logger: Logger,
  ) {
    this.callers = new Callers(access.tokens);
  }

  /** The caller's identity when it is granted `verb`; throws a Refusal (counted, logged) otherwise. */
  admit(call: CallerCall & { getPeer(): string }, verb: Verb): string {
    try {
      const { identity, origin } = this.identify(call);
      const grant = this.access.grants[identity];
      if (grant !== 'control' && grant !== NEEDS[verb]) {
        throw new Refusal(
          GrpcStatus.PERMISSION_DENIED,
          `${identity} (${origin}) is not granted ${NEEDS[verb]}, which Launcher/${verb} needs`,
          'not_granted',
        );
      }
      return identity;
    } catch (error) {
      if (!(error instanceof Refusal)) throw error;
      launcherMetrics.controlRefused.inc({ reason: error.reason });
      // The message names identities and verbs, never a token.
      this.logger.warn(
        { msgId: LogIds.controlRefused, verb, reason: error.reason, peer: call.getPeer() },
        `Launcher/${verb} refused: ${error.message}`,
      );
      throw error;
    }
  }

  private identify(call: CallerCall) {
    try {
      return this.callers.identify(call);
    } catch (error) {
      if (error instanceof CallerError) throw new Refusal(error.code, error.message, error.reason);
      throw error;
    }
  }
}

function call(controls: Controls, verb: Verb, request: object): Promise<object> {
  if (verb === 'display') return Promise.resolve(controls.display());
  if (verb === 'refresh') return controls.refresh();
  return controls[verb](request as ComponentRequest);
}

/** Serves every verb on the bus for this host and for the fan-out id. */
export async function serveOnBus(bus: Bus, hostId: string, controls: Controls): Promise<Served> {
  const served = await Promise.all(
    VERBS.map((verb) =>
      bus.serve(
        [Subjects.control('launcher', hostId, verb), Subjects.control('launcher', '*', verb)],
        ControlCodecsOf[verb] as ControlCodecs<object, object>,
        (request) => call(controls, verb, request),
      ),
    ),
  );
  return {
    stop: () => {
      for (const s of served) s.stop();
    },
  };
}

function grpcError(error: unknown): Partial<ServiceError> {
  if (error instanceof Refusal) return { code: error.code, details: error.message };
  if (error instanceof ControlError) {
    return { code: GrpcStatus[error.code], details: error.message, message: error.message };
  }
  return { code: GrpcStatus.INTERNAL, details: (error as Error).message };
}

/** Adds the `Launcher` service to a gRPC server; every call passes the guard first. */
export function addGrpcService(server: Server, controls: Controls, guard: ControlGuard): void {
  const handlers = Object.fromEntries(
    VERBS.map((verb) => [
      verb,
      (
        callObj: ServerUnaryCall<object, object>,
        callback: (error: Partial<ServiceError> | null, reply?: object) => void,
      ) => {
        try {
          guard.admit(callObj, verb);
        } catch (error) {
          callback(grpcError(error));
          return;
        }
        call(controls, verb, callObj.request).then(
          (reply) => callback(null, reply),
          (error) => callback(grpcError(error)),
        );
      },
    ]),
  );
  server.addService(serviceDefinition('halyard.launcher.v1.Launcher'), handlers);
}

export async function bindGrpc(
  server: Server,
  address: string,
  tls: ControlAccess['tls'],
): Promise<number> {
  const credentials = await serverCredentials(tls);
  return new Promise((resolve, reject) =>
    server.bindAsync(address, credentials, (error, port) =>
      error ? reject(error) : resolve(port),
    ),
  );
}
