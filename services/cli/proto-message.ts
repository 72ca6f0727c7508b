/**
 * The `.proto` side of `halyard call`: finding a method in .proto files (the demo's by
 * default), a request message from JSON, and the wire codec of its messages. Replies
 * are protobuf JSON: enum values by name, 64-bit integers as strings, every field.
 */
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { CliError, ExitCodes } from './errors.js';

/** The contracts of this repository (the demo greeter among them), compiled to JSON. */
const BUILT_IN_DESCRIPTOR = new URL('../../proto/gen/halyard.json', import.meta.url);

export interface MessageCodec {
  serialize(value: object): Buffer;
  deserialize(bytes: Buffer): object;
}

/** The given .proto files, or the built-in contracts. */
export async function loadProtos(files: readonly string[] | undefined): Promise<protobuf.Root> {
  return files?.length
    ? protobuf.load([...files])
    : protobuf.Root.fromJSON(JSON.parse(readFileSync(BUILT_IN_DESCRIPTOR, 'utf8')));
}

/** The method `service/method` of `root`, resolved; undefined when it has none. */
export function findMethod(
  root: protobuf.Root,
  service: string,
  method: string,
): protobuf.Method | undefined {
  try {
    return root.lookupService(service).methods[method]?.resolve() as protobuf.Method | undefined;
  } catch {
    return undefined;
  }
}

/**
 * The request of `method` from JSON text: an object whose fields the request type has
 * (the .proto's snake_case names are accepted as well as the JSON camelCase ones).
 */
export function requestFromJson(method: protobuf.Method, json: string): object {
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch (error) {
    throw new CliError(`--data is not JSON: ${(error as Error).message}`, ExitCodes.usage, {
      cause: error,
    });
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new CliError('--data must be a JSON object', ExitCodes.usage);
  }
  const request = Object.fromEntries(
    Object.entries(data).map(([k, v]) => [
      k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()),
      v,
    ]),
  );
  const type = method.resolvedRequestType as protobuf.Type;
  const known = new Set(type.fieldsArray.flatMap((f) => [f.name, f.options?.json_name ?? f.name]));
  const unknown = Object.keys(request).filter((k) => !known.has(k));
  if (unknown.length > 0) {
    throw new CliError(
      `--data: ${type.fullName.slice(1)} has no field ${unknown.join(', ')} (fields: ${type.fieldsArray.map((f) => f.name).join(', ')})`,
      ExitCodes.usage,
    );
  }
  const problem = type.verify(request);
  if (problem) throw new CliError(`--data: ${problem}`, ExitCodes.usage);
  return request;
}

/** Requests from JSON objects to bytes; replies from bytes to protobuf JSON. */
export function messageCodec(method: protobuf.Method): MessageCodec {
  const requestType = method.resolvedRequestType as protobuf.Type;
  const responseType = method.resolvedResponseType as protobuf.Type;
  return {
    serialize: (value) => Buffer.from(requestType.encode(requestType.fromObject(value)).finish()),
    deserialize: (bytes) =>
      responseType.toObject(responseType.decode(bytes), {
        longs: String,
        enums: String,
        defaults: true,
      }),
  };
}
