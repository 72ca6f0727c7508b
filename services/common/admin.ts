/**
 * The admin HTTP endpoint every component exposes for operators and L4 load
 * balancers: `/healthz` (the process is alive), `/readyz` (it may take traffic:
 * its local views are loaded) and `/metrics` (Prometheus).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, register } from 'prom-client';

let defaultsCollected = false;

export interface AdminServer {
  readonly port: number;
  close(): Promise<void>;
}

export interface AdminOptions {
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Why the component is not ready, or undefined when it is. */
  readonly notReady: () => string | undefined;
  /** The /metrics body (Prometheus text); by default this process's registry. */
  readonly metrics?: () => Promise<string>;
}

export async function startAdmin(options: AdminOptions): Promise<AdminServer> {
  // The process metrics describe this process: collected when its registry is served.
  if (!defaultsCollected && !options.metrics) {
    collectDefaultMetrics();
    defaultsCollected = true;
  }
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const reason = options.notReady();
      res
        .writeHead(reason ? 503 : 200, { 'content-type': 'text/plain' })
        .end(reason ? `not ready: ${reason}\n` : 'ready\n');
    } else if (path === '/metrics') {
      (options.metrics ?? (() => register.metrics()))().then(
        (body) => res.writeHead(200, { 'content-type': register.contentType }).end(body),
        (error: Error) => res.writeHead(500).end(`${error.message}\n`),
      );
    } else {
      res
        .writeHead(404, { 'content-type': 'text/plain' })
        .end('try /healthz, /readyz or /metrics\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
