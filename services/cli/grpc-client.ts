/**
 * A gRPC call by method path with any codec (grpc-js's generic client), unary or
 * server-streaming, for `halyard call`. Failures become CliErrors naming the status.
 */
import * as grpc from '@grpc/grpc-js';
import { CliError, ExitCodes } from './errors.js';

export interface Rpc {
  /** host:port of the server (a gateway). */
  readonly address: string;
  /** `/<service>/<method>`. */
  readonly path: string;
  readonly metadata: grpc.Metadata;
  readonly deadline: Date;
  /** Whether the method streams its replies. */
  readonly responseStream: boolean;
}

export interface Codec<Req, Res> {
  serialize(value: Req): Buffer;
  deserialize(bytes: Buffer): Res;
}

/** A reply, with the response headers received before it. */
export type OnReply<Res> = (value: Res, headers: grpc.Metadata | undefined) => void;

/** Request metadata from `key=value` pairs (keys lower-cased, as HTTP/2 wants them). */
export function metadataOf(pairs: readonly string[] | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const pair of pairs ?? []) {
    const eq = pair.indexOf('=');
    if (eq < 1) throw new CliError(`--header ${pair}: expected key=value`, ExitCodes.usage);
    metadata.add(pair.slice(0, eq).toLowerCase(), pair.slice(eq + 1));
  }
  return metadata;
}

/** Makes the call, handing each reply to `onReply`; resolves when the call has ended. */
export async function invoke<Req, Res>(
  rpc: Rpc,
  codec: Codec<Req, Res>,
  request: Req,
  onReply: OnReply<Res>,
): Promise<void> {
  const client = new grpc.Client(rpc.address, grpc.credentials.createInsecure());
  let headers: grpc.Metadata | undefined;
  const onHeaders = (m: grpc.Metadata) => {
    headers = m;
  };
  const { serialize, deserialize } = codec;
  const options = { deadline: rpc.deadline };
  try {
    await new Promise<void>((resolve, reject) => {
      if (rpc.responseStream) {
        client
          .makeServerStreamRequest(rpc.path, serialize, deserialize, request, rpc.metadata, options)
          .on('metadata', onHeaders)
          .on('data', (value: Res) => onReply(value, headers))
          .on('error', reject)
          .on('end', resolve);
      } else {
        client
          .makeUnaryRequest(
            rpc.path,
            serialize,
            deserialize,
            request,
            rpc.metadata,
            options,
            (error, value) => {
              if (error) return reject(error);
              onReply(value as Res, headers);
              resolve();
            },
          )
          .on('metadata', onHeaders);
      }
    });
  } catch (error) {
    const e = error as grpc.ServiceError;
    const code = grpc.status[e.code] ?? String(e.code);
    throw new CliError(
      `${rpc.path.slice(1)} via ${rpc.address} failed: ${code}: ${(e.details || e.message).replace(/\s*Resolution note:\s*$/, '')}`,
      e.code === grpc.status.UNAVAILABLE ? ExitCodes.unreachable : ExitCodes.failed,
      { cause: error },
    );
  } finally {
    client.close();
  }
}
