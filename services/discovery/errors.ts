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

/** Statuses that refuse a request (counted and logged); others are outcomes (NOT_FOUND) or the replica's state. */
const REFUSALS: ReadonlySet<status> = new Set([
  status.UNAUTHENTICATED,
  status.PERMISSION_DENIED,
  status.FAILED_PRECONDITION,
  status.INVALID_ARGUMENT,
  status.ALREADY_EXISTS,
]);

/** The metric label of a refusal (`permission_denied`), or undefined when it is none. */
export function refusalReason(error: RegistryError): string | undefined {
  return REFUSALS.has(error.code) ? status[error.code].toLowerCase() : undefined;
}

export function invalid(field: string, problem: string): RegistryError {
  return new RegistryError(status.INVALID_ARGUMENT, `${field}: ${problem}`, field);
}
