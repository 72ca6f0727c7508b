/**
 * The launcher's control verbs on two transports: the gRPC `Launcher` service and bus
 * request/reply on `halyard.ctl.launcher.<host>.<verb>` (and `.all.`, the fan-out).
 * Both call the same Controls and fail with the same gRPC status names.
 */
import {
  status as GrpcStatus,
  type Server,
  ServerCredentials,
  type ServiceError,
} from '@grpc/grpc-js';
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
import { serviceDefinition } from '../common/grpc.js';

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
  if (error instanceof ControlError) {
    return { code: GrpcStatus[error.code], details: error.message, message: error.message };
  }
  return { code: GrpcStatus.INTERNAL, details: (error as Error).message };
}

/** Adds the `Launcher` service to a gRPC server. */
export function addGrpcService(server: Server, controls: Controls): void {
  const handlers = Object.fromEntries(
    VERBS.map((verb) => [
      verb,
      (
        callObj: { request: object },
        callback: (error: Partial<ServiceError> | null, reply?: object) => void,
      ) => {
        call(controls, verb, callObj.request).then(
          (reply) => callback(null, reply),
          (error) => callback(grpcError(error)),
        );
      },
    ]),
  );
  server.addService(serviceDefinition('halyard.launcher.v1.Launcher'), handlers);
}

export function bindGrpc(server: Server, address: string): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, ServerCredentials.createInsecure(), (error, port) =>
      error ? reject(error) : resolve(port),
    ),
  );
}
