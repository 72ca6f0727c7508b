/**
 * The floor of any proxy on node:http2: one upstream session per backend, each call to
 * the next backend in turn, `pipe()` both ways, trailers copied, nothing else (no
 * routing, retries, metrics or error handling). A comparator for bench/gateway.ts:
 * what node:http2 itself costs per call.
 *
 * Without backends it proxies nothing and answers each call itself (its request bytes
 * back, then `grpc-status: 0`): the cost of the server half of a call alone, below
 * which no proxy on node:http2 can go.
 *
 *   node --import tsx bench/h2-pipe-proxy.ts <listen port> [<backend port>...]
 */
import {
  connect,
  createServer,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import { connect as netConnect } from 'node:net';

const [listenPort, ...backendPorts] = process.argv.slice(2).map(Number);
const upstreams = backendPorts.map((port) =>
  connect(`http://127.0.0.1:${port}`, {
    createConnection: () => netConnect({ host: '127.0.0.1', port, noDelay: true }),
  }),
);
let next = 0;

function pipeCall(down: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  const up = upstreams[next++ % upstreams.length]!.request(headers);
  let trailers: IncomingHttpHeaders = {};
  up.on('response', (h) => {
    if (!down.destroyed) down.respond(h, { waitForTrailers: true });
  });
  up.on('trailers', (t) => {
    trailers = t;
  });
  down.on('wantTrailers', () => down.sendTrailers(trailers));
  down.pipe(up);
  up.pipe(down);
  up.on('error', () => down.destroy());
  down.on('error', () => up.destroy());
}

function answerCall(down: ServerHttp2Stream): void {
  const chunks: Buffer[] = [];
  down.on('data', (chunk: Buffer) => chunks.push(chunk));
  down.on('end', () => {
    down.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    down.end(Buffer.concat(chunks));
  });
  down.on('wantTrailers', () => down.sendTrailers({ 'grpc-status': '0' }));
  down.on('error', () => {});
}

const server = createServer();
server.on('stream', upstreams.length > 0 ? pipeCall : answerCall);
server.listen(listenPort, '127.0.0.1', () => process.stdout.write('ready\n'));
