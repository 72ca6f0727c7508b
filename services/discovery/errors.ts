import { status } from '@grpc/grpc-js';

/** A Registry call's failure, carried to the client as this gRPC status and message. */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  constructor(
    readonly code: status,
    message: string,
    /** The request field at fault, for bad input (also the metric label). */
    readonly field?: string,
  ) {
    super(message);
  }
}

export function invalid(field: string, problem: string): RegistryError {
  return new RegistryError(status.INVALID_ARGUMENT, `${field}: ${problem}`, field);
}
