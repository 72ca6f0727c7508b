/**
 * Start to ready of each component process on a real 3-node cluster: the time from
 * spawning `node <main>` until its admin `/readyz` answers 200 (polled every 5 ms),
 * `--runs` times per component; the machine is shared, so the table gives the median.
 *   --runtime js   the built JavaScript (`npm run build`): node --enable-source-maps dist/…/main.js
 *   --runtime tsx  the TypeScript sources compiled at load time: node --import tsx …/main.ts
 * Usage: bash bench/run.sh start-time [--runtime js|tsx] [--runs 7]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as net from 'node:net';
import { parseArgs } from 'node:util';
import { sleep } from '../services/common/sleep.js';
import { writeConfig } from '../test/support/launcher.js';
import { NatsCluster } from '../test/support/nats-cluster.js';

const { values } = parseArgs({
  options: {
    runtime: { type: 'string', default: 'js' },
    runs: { type: 'string', default: '7' },
  },
});
const RUNTIME = values.runtime;
if (RUNTIME !== 'js' && RUNTIME !== 'tsx') throw new Error('--runtime is js or tsx');
const RUNS = Number(values.runs);
const READY_TIMEOUT_MS = 30_000;

/** How a component's entry point is run: with the compiled JS, or under tsx. */
function command(component: string): string[] {
  return RUNTIME === 'js'
    ? ['--enable-source-maps', `dist/services/${component}/main.js`]
    : ['--import', 'tsx', `services/${component}/main.ts`];
}

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** Each component's flags, with its admin port. */
async function argsOf(component: string, nats: string, admin: number): Promise<string[]> {
  const grpc = `127.0.0.1:${await freePort()}`;
  switch (component) {
    case 'gateway':
      return [
        '--id',
        'gw-bench',
        '--nats',
        nats,
        '--listen',
        grpc,
        '--admin',
        `127.0.0.1:${admin}`,
      ];
    case 'discovery':
      return [
        '--replica-id',
        'd-bench',
        '--nats',
        nats,
        '--grpc-listen',
        grpc,
        '--admin-port',
        `${admin}`,
      ];
    case 'cache':
      return [
        '--id',
        'c-bench',
        '--nats',
        nats,
        '--grpc-port',
        grpc.split(':')[1]!,
        '--admin-port',
        `${admin}`,
      ];
    case 'launcher': {
      const config = await writeConfig({ hostId: 'bench-start', components: {} });
      return ['--config', config, '--nats', nats, '--grpc', grpc, '--admin-port', `${admin}`];
    }
    default:
      throw new Error(`no component ${component}`);
  }
}

async function startToReady(component: string, nats: string): Promise<number> {
  const admin = await freePort();
  const args = [...command(component), ...(await argsOf(component, nats, admin))];
  const started = performance.now();
  const child: ChildProcess = spawn(process.execPath, args, {
    stdio: 'ignore',
    env: { ...process.env, HALYARD_LOG_LEVEL: 'warn' },
  });
  const exited = once(child, 'exit');
  try {
    while (performance.now() - started < READY_TIMEOUT_MS) {
      if (child.exitCode !== null) throw new Error(`${component} exited (${child.exitCode})`);
      const ok = await fetch(`http://127.0.0.1:${admin}/readyz`)
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) return performance.now() - started;
      await sleep(5);
    }
    throw new Error(`${component} not ready within ${READY_TIMEOUT_MS} ms`);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

const median = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

const cluster = await NatsCluster.start();
try {
  const nats = cluster.servers.join(',');
  console.log(`node ${process.version}; runtime ${RUNTIME}; ${RUNS} runs per component`);
  console.log('| component | runtime | min ms | median ms | max ms |');
  console.log('|---|---|---|---|---|');
  for (const component of ['gateway', 'discovery', 'cache', 'launcher']) {
    await startToReady(component, nats); // a first run warms the page cache
    const xs: number[] = [];
    for (let i = 0; i < RUNS; i++) xs.push(await startToReady(component, nats));
    const fmt = (x: number) => x.toFixed(0);
    console.log(
      `| ${component} | ${RUNTIME} | ${fmt(Math.min(...xs))} | ${fmt(median(xs))} | ${fmt(Math.max(...xs))} |`,
    );
  }
} finally {
  await cluster.close();
}
