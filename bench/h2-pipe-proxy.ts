/**
 * The floor of any proxy on node:http2: one upstream session, `pipe()` both ways,
 * trailers copied, nothing else (no routing, retries, metrics or error handling).
 * A comparator for bench/gateway.ts: what node:http2 itself costs per call.
 *
 *   node --import tsx bench/h2-pipe-proxy.ts <listen port> <backend port>
 */
import { connect, createServer, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';

const [listenPort, backendPort] = process.argv.slice(2).map(Number);
const upstream = connect(`http://127.0.0.1:${backendPort}`, {
  createConnection: () => netConnect({ host: '127.0.0.1', port: backendPort!, noDelay: true }),
});
const server = createServer();
server.on('stream', (down, headers) => {
  const up = upstream.request(headers);
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
});
server.listen(listenPort, '127.0.0.1', () => process.stdout.write('ready\n'));
