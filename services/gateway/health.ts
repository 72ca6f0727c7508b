/**
 * `grpc.health.v1.Health/Check`, answered by the gateway itself on its HTTP/2 port for
 * L4 load balancers and clients: the empty service name is the gateway (serving once
 * its registry view is loaded and until it stops), a registered gRPC service name is
 * serving while one of its instances can take calls.
 */
import type { ServerHttp2Stream } from 'node:http2';
import { grpc } from '../../proto/gen/halyard.js';
import type { LocalHandler } from './admission.js';
import { GATEWAY_HEADER, respondStatus, Status, StatusNames } from './grpc-status.js';
import { gatewayMetrics } from './metrics.js';
import type { RoutingTable } from './routing-table.js';

const { HealthCheckRequest, HealthCheckResponse } = grpc.health.v1;
const { ServingStatus } = HealthCheckResponse;
/** A health request is a service name: anything larger is not one. */
const MAX_REQUEST_BYTES = 1024;

export class Health implements LocalHandler {
  constructor(
    private readonly table: RoutingTable,
    private readonly gatewayServing: () => boolean,
    private readonly gatewayId: string,
  ) {}

  handle(stream: ServerHttp2Stream, method: string): void {
    if (method !== 'Check') {
      gatewayMetrics.requests.inc({
        service: 'grpc.health.v1.Health',
        method,
        code: 'UNIMPLEMENTED',
      });
      respondStatus(
        stream,
        Status.UNIMPLEMENTED,
        `the gateway serves grpc.health.v1.Health/Check only, not ${method}: poll Check instead`,
        this.gatewayId,
      );
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REQUEST_BYTES) chunks.push(chunk);
    });
    stream.on('error', () => {});
    stream.on('end', () => {
      const [code, message, status] = this.check(Buffer.concat(chunks), size);
      gatewayMetrics.requests.inc({
        service: 'grpc.health.v1.Health',
        method,
        code: StatusNames[code] ?? String(code),
      });
      if (code !== Status.OK) {
        respondStatus(stream, code, message, this.gatewayId);
        return;
      }
      const body = HealthCheckResponse.encode({ status }).finish();
      const frame = Buffer.alloc(5 + body.length);
      frame.writeUInt32BE(body.length, 1);
      frame.set(body, 5);
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', [GATEWAY_HEADER]: this.gatewayId },
        { waitForTrailers: true },
      );
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(frame);
    });
  }

  private check(request: Buffer, size: number): [code: number, message: string, status: number] {
    if (size > MAX_REQUEST_BYTES || request.length < 5 || request[0] !== 0) {
      return [Status.INVALID_ARGUMENT, 'expected one uncompressed HealthCheckRequest', 0];
    }
    let service: string;
    try {
      service = HealthCheckRequest.decode(request.subarray(5, 5 + request.readUInt32BE(1))).service;
    } catch (error) {
      return [Status.INVALID_ARGUMENT, `HealthCheckRequest: ${(error as Error).message}`, 0];
    }
    if (service === '') {
      return [
        Status.OK,
        '',
        this.gatewayServing() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING,
      ];
    }
    const route = this.table.route(service);
    if (route === undefined) {
      return [Status.NOT_FOUND, `no service registered for ${service}`, 0];
    }
    const serving = route.endpoints.some((endpoint) => endpoint.available);
    return [Status.OK, '', serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING];
  }
}
