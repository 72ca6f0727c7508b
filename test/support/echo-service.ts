/**
 * The echo test service (halyard.testing.v1.Echo) on a real grpc-js server: every call
 * kind, with the delay, failure, trailers and response headers each request asks for
 * (headers: see `echoedHeaders`). It records what it
 * saw (calls, metadata, deadlines, cancellations) so tests can compare a call through
 * the gateway with a direct one.
 */
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../services/common/grpc.js';
import { sleep } from '../../services/common/sleep.js';

export const ECHO_SERVICE = 'halyard.testing.v1.Echo';
export const echoDefinition = serviceDefinition(ECHO_SERVICE);

export interface EchoRequest {
  payload?: Uint8Array;
  delayMs?: number;
  failCode?: number;
  failMessage?: string;
  responseCount?: number;
  trailers?: Record<string, string>;
  responseSize?: number;
}

export interface EchoResponse {
  payload: Uint8Array;
  instanceId: string;
  index: number;
}

/** What the service observed of one call. */
export interface SeenCall {
  readonly method: string;
  readonly metadata: grpc.Metadata;
  /** The deadline grpc-js derived from grpc-timeout; Infinity when none was sent. */
  readonly deadline: number;
  cancelled: boolean;
  /** Responses written so far (streams). */
  sent: number;
}

export interface EchoServer {
  readonly port: number;
  readonly address: string;
  readonly instanceId: string;
  readonly calls: SeenCall[];
  stop(): Promise<void>;
}

type AnyCall = grpc.ServerUnaryCall<EchoRequest, EchoResponse> &
  grpc.ServerWritableStream<EchoRequest, EchoResponse>;

export async function startEchoServer(
  options: {
    port?: number;
    instanceId?: string;
    recordCalls?: boolean;
    /** TLS instead of h2c. */
    credentials?: grpc.ServerCredentials;
    /** Told of every unary call as it starts running, before its delay. */
    onUnary?: (request: EchoRequest) => void;
  } = {},
): Promise<EchoServer> {
  const instanceId = options.instanceId ?? 'echo-1';
  const calls: SeenCall[] = [];
  const record = options.recordCalls ?? true;

  const see = (
    method: string,
    call:
      | grpc.ServerUnaryCall<EchoRequest, EchoResponse>
      | grpc.ServerReadableStream<EchoRequest, EchoResponse>,
  ): SeenCall => {
    const deadline = call.getDeadline();
    const seen: SeenCall = {
      method,
      metadata: call.metadata,
      deadline: deadline instanceof Date ? deadline.getTime() : Number(deadline),
      cancelled: false,
      sent: 0,
    };
    if (record) calls.push(seen);
    call.on('cancelled', () => {
      seen.cancelled = true;
    });
    return seen;
  };

  const respond = (request: EchoRequest, index: number): EchoResponse => ({
    payload:
      request.responseSize && request.responseSize > 0
        ? Buffer.alloc(request.responseSize, 0x61)
        : (request.payload ?? new Uint8Array()),
    instanceId,
    index,
  });

  const trailersOf = (request: EchoRequest): grpc.Metadata => {
    const trailers = new grpc.Metadata();
    for (const [key, value] of Object.entries(request.trailers ?? {})) trailers.set(key, value);
    return trailers;
  };

  const failure = (request: EchoRequest): Partial<grpc.StatusObject> | undefined =>
    request.failCode
      ? {
          code: request.failCode,
          details: request.failMessage ?? 'failed as asked',
          metadata: trailersOf(request),
        }
      : undefined;

  const server = new grpc.Server();
  server.addService(echoDefinition, {
    unary: async (
      call: grpc.ServerUnaryCall<EchoRequest, EchoResponse>,
      done: grpc.sendUnaryData<EchoResponse>,
    ) => {
      see('Unary', call);
      const request = call.request;
      options.onUnary?.(request);
      if (request.delayMs) await sleep(request.delayMs);
      const failed = failure(request);
      if (failed) return done(failed);
      call.sendMetadata(echoedHeaders(call.metadata));
      done(null, respond(request, 0), trailersOf(request));
    },
    serverStream: async (call: AnyCall) => {
      const seen = see('ServerStream', call);
      const request = call.request;
      call.sendMetadata(echoedHeaders(call.metadata));
      const count = request.responseCount || 1;
      for (let i = 0; i < count && !seen.cancelled; i++) {
        if (request.delayMs) await sleep(request.delayMs);
        // Honour flow control, so a client that does not read holds the backend back.
        if (!call.write(respond(request, i))) {
          await new Promise((resolve) => {
            call.once('drain', resolve);
            call.once('cancelled', resolve);
          });
        }
        seen.sent++;
      }
      if (seen.cancelled) return;
      const failed = failure(request);
      if (failed) return call.emit('error', failed);
      call.end(trailersOf(request));
    },
    clientStream: (
      call: grpc.ServerReadableStream<EchoRequest, EchoResponse>,
      done: grpc.sendUnaryData<EchoResponse>,
    ) => {
      see('ClientStream', call);
      const chunks: Uint8Array[] = [];
      let last: EchoRequest = {};
      call.on('data', (request: EchoRequest) => {
        last = request;
        chunks.push(request.payload ?? new Uint8Array());
      });
      call.on('end', async () => {
        if (last.delayMs) await sleep(last.delayMs);
        const failed = failure(last);
        if (failed) return done(failed);
        done(
          null,
          { payload: Buffer.concat(chunks), instanceId, index: chunks.length },
          trailersOf(last),
        );
      });
    },
    bidi: (call: grpc.ServerDuplexStream<EchoRequest, EchoResponse>) => {
      const seen = see('Bidi', call);
      call.sendMetadata(echoedHeaders(call.metadata));
      let index = 0;
      let last: EchoRequest = {};
      let pending = Promise.resolve();
      call.on('data', (request: EchoRequest) => {
        last = request;
        const i = index++;
        pending = pending.then(async () => {
          if (request.delayMs) await sleep(request.delayMs);
          if (!seen.cancelled) call.write(respond(request, i));
          seen.sent++;
        });
      });
      call.on('end', async () => {
        await pending;
        const failed = failure(last);
        if (failed) return call.emit('error', failed);
        call.end(trailersOf(last));
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `127.0.0.1:${options.port ?? 0}`,
      options.credentials ?? grpc.ServerCredentials.createInsecure(),
      (error, bound) => (error ? reject(error) : resolve(bound)),
    ),
  );
  return {
    port,
    address: `127.0.0.1:${port}`,
    instanceId,
    calls,
    stop: () =>
      new Promise((resolve) => {
        server.tryShutdown(() => resolve());
        // Calls that never end (a test's stuck stream) must not hold the shutdown.
        setTimeout(() => server.forceShutdown(), 2000).unref();
      }),
  };
}

const RESPOND_PREFIX = 'echo-respond-';

/**
 * Request metadata starting with `echo-` comes back as response headers, and
 * `echo-respond-<name>: v` as the response header `<name>: v` (a header the client
 * could not send itself, such as the mesh's `x-halyard-…`).
 */
function echoedHeaders(metadata: grpc.Metadata): grpc.Metadata {
  const headers = new grpc.Metadata();
  for (const [key, value] of Object.entries(metadata.getMap())) {
    if (key.startsWith(RESPOND_PREFIX))
      headers.set(key.slice(RESPOND_PREFIX.length), value as string);
    else if (key.startsWith('echo-')) headers.set(key, value as string);
  }
  return headers;
}

/** A grpc-js client of the echo service at `address` (a backend or a gateway). */
export function echoClient(address: string): EchoClient {
  const Client = grpc.makeGenericClientConstructor(echoDefinition, 'Echo');
  return new Client(address, grpc.credentials.createInsecure()) as unknown as EchoClient;
}

type Callback<T> = (error: grpc.ServiceError | null, response: T) => void;
export interface EchoClient extends grpc.Client {
  unary(
    request: EchoRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: Callback<EchoResponse>,
  ): grpc.ClientUnaryCall;
  serverStream(
    request: EchoRequest,
    metadata?: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<EchoResponse>;
  clientStream(
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: Callback<EchoResponse>,
  ): grpc.ClientWritableStream<EchoRequest>;
  bidi(
    metadata?: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientDuplexStream<EchoRequest, EchoResponse>;
}
