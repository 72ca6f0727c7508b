// Test child: serves HTTP on $PORT (`/healthz`, `/work` answers with its instance and
// pid), or with `--grpc` a gRPC health service. On SIGTERM it finishes in-flight
// requests and exits 0. `--grandchild` also starts a process in its group.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';

const port = Number(process.env.PORT);
const instance = process.env.HALYARD_INSTANCE;
const args = process.argv.slice(2);

if (args.includes('--grandchild')) {
  spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
}

if (args.includes('--grpc')) {
  const grpc = await import('@grpc/grpc-js');
  const { HealthImplementation } = await import('grpc-health-check');
  const server = new grpc.Server();
  new HealthImplementation({ '': 'SERVING' }).addToServer(server);
  server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (error) => {
    if (error) {
      console.error(`cannot listen on ${port}: ${error.message}`);
      process.exit(1);
    }
    console.log(`grpc health on ${port}`);
  });
  process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
} else {
  const server = createServer((req, res) => {
    if (req.url === '/healthz') return res.end('ok');
    if (req.url === '/work') return res.end(JSON.stringify({ instance, pid: process.pid }));
    res.writeHead(404).end();
  });
  server.on('error', (error) => {
    console.error(`cannot listen on ${port}: ${error.message}`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
