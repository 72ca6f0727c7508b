import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../services/common/grpc.js';
import * as samples from '../support/samples.js';

test('service definitions from proto/ carry the bus message shapes over real gRPC', async (t) => {
  const definition = serviceDefinition('halyard.discovery.v1.Registry');
  assert.deepEqual(Object.keys(definition), [
    'register',
    'renew',
    'deregister',
    'setStatus',
    'list',
    'watch',
  ]);
  assert.equal(definition.watch?.responseStream, true);

  const server = new grpc.Server();
  server.addService(definition, {
    register: (
      call: grpc.ServerUnaryCall<{ instance: object }, object>,
      callback: grpc.sendUnaryData<object>,
    ) => callback(null, { instance: call.request.instance, renewIntervalSeconds: 5 }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  t.after(() => server.forceShutdown());
  const Client = grpc.makeGenericClientConstructor(definition, 'Registry');
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as {
    register(req: object, cb: (e: Error | null, r: unknown) => void): void;
    close(): void;
  };
  t.after(() => client.close());
  const instance = samples.instance();
  const response = await new Promise((resolve, reject) =>
    client.register({ instance }, (e, r) => (e ? reject(e) : resolve(r))),
  );
  assert.deepEqual(response, { instance, renewIntervalSeconds: 5 });
});
