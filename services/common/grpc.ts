/**
 * gRPC service definitions for Halyard's own APIs, built from the contracts in
 * `proto/` (the generated JSON descriptor), so that servers and clients use the same
 * messages as the bus: plain objects, 64-bit integers as numbers, enums as numbers.
 */
import { createRequire } from 'node:module';
import type { ServiceDefinition } from '@grpc/grpc-js';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const root = protobuf.Root.fromJSON(require('../../proto/gen/halyard.json'));

const conversion = { longs: Number, enums: Number, defaults: true, arrays: true, objects: true };

function codecOf(type: protobuf.Type) {
  return {
    serialize: (value: object) => Buffer.from(type.encode(type.fromObject(value)).finish()),
    deserialize: (bytes: Buffer) => type.toObject(type.decode(bytes), conversion),
  };
}

/** A grpc-js definition of a service in `proto/`, e.g. `halyard.discovery.v1.Registry`. */
export function serviceDefinition(fullName: string): ServiceDefinition {
  const service = root.lookupService(fullName);
  const definition: Record<string, ServiceDefinition[string]> = {};
  for (const method of service.methodsArray) {
    method.resolve();
    const request = codecOf(method.resolvedRequestType as protobuf.Type);
    const response = codecOf(method.resolvedResponseType as protobuf.Type);
    // grpc-js keys handlers by the method name with a lower-case first letter.
    const key = method.name.charAt(0).toLowerCase() + method.name.slice(1);
    definition[key] = {
      path: `/${fullName}/${method.name}`,
      requestStream: method.requestStream === true,
      responseStream: method.responseStream === true,
      requestSerialize: request.serialize,
      requestDeserialize: request.deserialize,
      responseSerialize: response.serialize,
      responseDeserialize: response.deserialize,
      originalName: method.name,
    };
  }
  return definition;
}
