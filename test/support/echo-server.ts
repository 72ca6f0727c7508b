/**
 * The echo test service as its own process, so that tests can `kill -9` it and
 * benchmarks can keep it off the load driver's event loop. With `--nats` it registers
 * itself in the registry (as an instance of `--service`) and renews its lease.
 *
 *   node --import tsx test/support/echo-server.ts --port 0 --instance echo-1 [--nats nats://…] [--report-calls]
 *
 * Prints one JSON line `{"port": N}` on stdout once it serves (the first line), then
 * with `--report-calls` one `{"unary": "<payload>"}` per unary call it runs.
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Bus, RegistryBucket } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { ECHO_SERVICE, startEchoServer } from './echo-service.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    instance: { type: 'string', default: 'echo-1' },
    service: { type: 'string', default: 'echo' },
    nats: { type: 'string' },
    lease: { type: 'string', default: '15' },
    /** Print `{"unary": "<payload>"}` as each unary call starts running. */
    'report-calls': { type: 'boolean', default: false },
  },
});

const echo = await startEchoServer({
  port: Number(values.port),
  instanceId: values.instance,
  // A long-running process must not keep every call it served.
  recordCalls: false,
  ...(values['report-calls']
    ? {
        onUnary: (request) =>
          process.stdout.write(
            `${JSON.stringify({ unary: Buffer.from(request.payload ?? []).toString('utf8') })}\n`,
          ),
      }
    : {}),
});

if (values.nats) {
  const bus = await Bus.connect({
    servers: values.nats.split(','),
    name: `echo-${values.instance}`,
    // stdout carries the one line the parent reads.
    logger: pino({ level: 'warn' }, pino.destination(2)),
  });
  await bus.provision();
  const store = await bus.store(RegistryBucket);
  const leaseSeconds = Number(values.lease);
  const registeredAtMs = Date.now();
  const renew = () =>
    store.put({
      serviceId: values.service,
      instanceId: values.instance,
      address: echo.address,
      grpcServices: [ECHO_SERVICE],
      status: halyard.discovery.v1.InstanceStatus.UP,
      metadata: {},
      leaseSeconds,
      registeredAtMs,
      renewedAtMs: Date.now(),
      launcherId: '',
      hostId: '',
      version: 'test',
    });
  await renew();
  setInterval(() => void renew().catch(() => {}), (leaseSeconds * 1000) / 3).unref();
}

process.stdout.write(`${JSON.stringify({ port: echo.port })}\n`);
process.on('SIGTERM', () => void echo.stop().then(() => process.exit(0)));
// Keep serving until killed.
setInterval(() => {}, 1 << 30);
