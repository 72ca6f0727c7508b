/**
 * gRPC status codes, the responses the gateway makes itself, and the mapping of
 * HTTP/2 stream resets to statuses (gRPC's PROTOCOL-HTTP2 document).
 */
import { constants, type ServerHttp2Stream } from 'node:http2';

/** Names the instance that answered, on every proxied response; read by the header policy. */
export const INSTANCE_HEADER = 'x-halyard-instance';
/** Names the gateway, on every response the gateway makes itself. */
export const GATEWAY_HEADER = 'x-halyard-gateway';

export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** Status names by code, for metric labels (index = code). */
export const StatusNames = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

/** A stream reset by an instance after its response began, as the status the client gets. */
export function statusOfReset(rstCode: number): number {
  switch (rstCode) {
    case constants.NGHTTP2_REFUSED_STREAM:
      return Status.UNAVAILABLE;
    case constants.NGHTTP2_CANCEL:
      return Status.CANCELLED;
    case constants.NGHTTP2_ENHANCE_YOUR_CALM:
      return Status.RESOURCE_EXHAUSTED;
    case constants.NGHTTP2_INADEQUATE_SECURITY:
      return Status.PERMISSION_DENIED;
    default:
      return Status.INTERNAL;
  }
}

const resetNames = new Map<number, string>(
  Object.entries(constants)
    .filter(
      ([name]) =>
        name.startsWith('NGHTTP2_') &&
        /_(NO_ERROR|PROTOCOL_ERROR|INTERNAL_ERROR|FLOW_CONTROL_ERROR|SETTINGS_TIMEOUT|STREAM_CLOSED|FRAME_SIZE_ERROR|REFUSED_STREAM|CANCEL|COMPRESSION_ERROR|CONNECT_ERROR|ENHANCE_YOUR_CALM|INADEQUATE_SECURITY|HTTP_1_1_REQUIRED)$/.test(
          name,
        ),
    )
    .map(([name, value]) => [value as number, name.slice('NGHTTP2_'.length)]),
);

export function resetName(rstCode: number): string {
  return resetNames.get(rstCode) ?? `code ${rstCode}`;
}

/** `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%` itself. */
export function encodeMessage(message: string): string {
  return /^[\x20-\x24\x26-\x7e]*$/.test(message)
    ? message
    : Array.from(Buffer.from(message, 'utf8'), (byte) =>
        byte >= 0x20 && byte <= 0x7e && byte !== 0x25
          ? String.fromCharCode(byte)
          : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`,
      ).join('');
}

/** Ends a call the gateway answers itself with a trailers-only response. */
export function respondStatus(
  stream: ServerHttp2Stream,
  code: number,
  message: string,
  gatewayId: string,
): void {
  if (stream.headersSent || stream.destroyed) return;
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc',
      'grpc-status': String(code),
      'grpc-message': encodeMessage(message),
      [GATEWAY_HEADER]: gatewayId,
    },
    { endStream: true },
  );
}

/** A request that is not gRPC at all gets a plain HTTP error. */
export function respondHttp(stream: ServerHttp2Stream, status: number, message: string): void {
  if (stream.headersSent || stream.destroyed) return;
  stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8' });
  stream.end(`${message}\n`);
}

const timeoutUnits: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000_001,
};

/** `grpc-timeout` (at most 8 digits and a unit) in milliseconds; undefined if malformed. */
export function parseTimeout(value: string): number | undefined {
  const unit = timeoutUnits[value.charAt(value.length - 1)];
  const digits = value.slice(0, -1);
  if (unit === undefined || !/^\d{1,8}$/.test(digits)) return undefined;
  return Number(digits) * unit;
}
