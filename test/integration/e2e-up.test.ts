/**
 * End to end, as a newcomer runs it: `halyard up` in a fresh data dir on free ports, real
 * processes (3 nats-servers, a launcher, 2 discovery replicas, 2 gateways, the cache,
 * 3 greeters). Calls through both gateways; kill -9 of a greeter: calls keep working,
 * the launcher's restart shows up as lifecycle events; Ctrl-C (SIGINT) leaves no process.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type Bus, type LifecycleEvent, Subjects } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { serviceDefinition } from '../../services/common/grpc.js';
import { ControlCodecsOf } from '../../services/launcher/control.js';
import { LogIds as LauncherLogIds } from '../../services/launcher/log-ids.js';
import { pidAlive } from '../support/launcher.js';
import { freeBasePort, UpProcess } from '../support/up-process.js';

const READY_TIMEOUT_MS = 60_000;
const EXIT_TIMEOUT_MS = 30_000;
/** A greeter killed with -9 is restarted (first restart interval 1 s) and READY again. */
const RESTART_TIMEOUT_MS = 20_000;
const Kind = halyard.launcher.v1.LifecycleEvent.Kind;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'halyard-e2e-'));
let up: UpProcess | undefined;
let bus: Bus | undefined;
const clients: grpc.Client[] = [];

after(async () => {
  for (const c of clients) c.close();
  await bus?.close().catch(() => {});
  up?.kill();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

interface Reply {
  message: string;
  instanceId: string;
}

const Greeter = grpc.makeGenericClientConstructor(
  serviceDefinition('demo.greeter.v1.Greeter'),
  'Greeter',
);

function sayHello(client: grpc.Client, name: string): Promise<Reply> {
  const stub = client as unknown as {
    sayHello(
      req: object,
      opts: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, r?: Reply) => void,
    ): void;
  };
  return new Promise((resolve, reject) =>
    stub.sayHello({ name }, { deadline: Date.now() + 5000 }, (error, reply) =>
      error || !reply ? reject(error) : resolve(reply),
    ),
  );
}

function streamHellos(client: grpc.Client, count: number): Promise<Reply[]> {
  const stub = client as unknown as {
    streamHellos(req: object, opts: grpc.CallOptions): grpc.ClientReadableStream<Reply>;
  };
  return new Promise((resolve, reject) => {
    const replies: Reply[] = [];
    const call = stub.streamHellos(
      { name: 'e2e', count, intervalMs: 10 },
      { deadline: Date.now() + 5000 },
    );
    call.on('data', (r: Reply) => replies.push(r));
    call.on('error', reject);
    call.on('end', () => resolve(replies));
  });
}

test('halyard up: a mesh that answers through both gateways, fails over, restarts and stops clean', {
  timeout: 120_000,
}, async (t) => {
  const basePort = await freeBasePort();
  const t0 = Date.now();
  up = UpProcess.start(dataDir, basePort);
  const { stdout } = up;
  await up.ready(READY_TIMEOUT_MS);
  const readyMs = Date.now() - t0;
  t.diagnostic(`mesh ready after ${readyMs} ms (base port ${basePort})`);

  // The summary names both gateways and says how to call the demo through them.
  const gateways = up.gatewayAddresses();
  assert.equal(gateways.length, 2, stdout.join('\n'));
  assert.ok(stdout.some((l) => l.includes('halyard call') && l.includes(gateways[1]!)));
  // And names the server the bus runs on.
  const server = execFileSync(process.env.NATS_SERVER_BIN ?? 'nats-server', ['--version'], {
    encoding: 'utf8',
  }).match(/v(\d+\.\d+\.\d+)/)?.[1];
  assert.ok(
    stdout.includes(`Halyard bus: a 3-node NATS JetStream cluster (nats-server ${server})`),
    stdout.join('\n'),
  );

  bus = await up.operatorBus('e2e');
  up.noteProcesses();

  // Through both gateways: every call answered, by more than one instance.
  for (const address of gateways) {
    const client = new Greeter(address, grpc.credentials.createInsecure());
    clients.push(client);
    const answered = new Set<string>();
    for (let i = 0; i < 6; i++) answered.add((await sayHello(client, `call ${i}`)).instanceId);
    assert.ok(answered.size >= 2, `one instance answered everything via ${address}`);
    const stream = await streamHellos(client, 3);
    assert.deepEqual(
      stream.map((r) => r.message),
      ['Hello #1, e2e!', 'Hello #2, e2e!', 'Hello #3, e2e!'],
    );
  }

  t.diagnostic(`calls through both gateways done at ${Date.now() - t0} ms`);
  // kill -9 of a greeter: the launcher restarts it, the calls keep working meanwhile.
  const seen: LifecycleEvent[] = [];
  const restarted = () => {
    const exited = seen.findIndex(
      (e) => e.instance === 2 && e.kind === Kind.EXITED && e.signal === 'SIGKILL',
    );
    return (
      exited >= 0 &&
      seen.slice(exited).some((e) => e.instance === 2 && e.kind === Kind.RESTARTING) &&
      seen.slice(exited).some((e) => e.instance === 2 && e.kind === Kind.READY)
    );
  };
  let onRestarted: () => void = () => {};
  const restartSeen = new Promise<void>((resolve) => {
    onRestarted = resolve;
  });
  const since = new Date();
  const events = await bus.subscribe(
    { kind: 'lifecycle', filter: 'local.greeter.>', from: { time: since } },
    ({ event }) => {
      seen.push(event);
      if (restarted()) onRestarted();
    },
  );
  const status = await bus.request(
    Subjects.control('launcher', 'local', 'display'),
    {},
    ControlCodecsOf.display,
  );
  const victim = status.processes.find((p) => p.component === 'greeter' && p.instance === 2);
  assert.ok(victim?.pid);
  process.kill(victim.pid, 'SIGKILL');
  for (let i = 0; i < 10; i++) {
    const client = clients[i % 2]!;
    const reply = await sayHello(client, `after kill ${i}`);
    assert.match(reply.message, /^Hello, after kill \d+!$/);
  }
  t.diagnostic(`calls after kill -9 done at ${Date.now() - t0} ms`);
  const giveUp = setTimeout(onRestarted, RESTART_TIMEOUT_MS);
  await restartSeen;
  clearTimeout(giveUp);
  t.diagnostic(`restart seen at ${Date.now() - t0} ms`);
  assert.ok(restarted(), `no EXITED → RESTARTING → READY for greeter#2: ${JSON.stringify(seen)}`);
  await events.stop();
  up.noteProcesses();
  const again = await sayHello(clients[1]!, 'after restart');
  assert.match(again.message, /after restart/);
  await bus.close();
  bus = undefined;
  for (const c of clients.splice(0)) c.close();

  // Ctrl-C: everything stops, in order, and nothing is left behind.
  const stopping = Date.now();
  process.kill(up.pid, 'SIGINT');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    up.exit,
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), EXIT_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  assert.equal(code, 0, `halyard up did not exit cleanly (${code})\n${up.stderr.slice(-3000)}`);
  t.diagnostic(`stopped ${Date.now() - stopping} ms after SIGINT`);
  const left = [...up.seen].filter(pidAlive);
  assert.deepEqual(left, [], 'processes left behind');
  assert.match(up.stderr, /HALX0013I/, 'the mesh was stopped through its launcher');
  // The lifecycle events of the stop, as up shows them.
  const stopped = stdout.filter((l) => /^\s+■ \S+\s+stopped$/.test(l));
  assert.equal(
    stopped.length,
    8,
    `${stdout.join('\n')}\nthe launcher's transitions:\n${transitions()}`,
  );
  up.child.stdout?.destroy();
  up.child.stderr?.destroy();
});

/**
 * For a failure's message, from the launcher's log: its children's transitions, what they
 * wrote to stderr, and their own error lines (a crash says why in one of those).
 */
function transitions(): string {
  const file = path.join(dataDir, 'logs', 'launcher.log');
  if (!fs.existsSync(file)) return '(no launcher log)';
  const parse = (l: string): Record<string, unknown>[] => {
    try {
      return l.startsWith('{') ? [JSON.parse(l)] : [];
    } catch {
      return [];
    }
  };
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .flatMap(parse)
    .flatMap((l) => {
      const who = `${l.time} ${l.component}#${l.instance}`;
      if (typeof l.event === 'string')
        return [`${who} ${l.event} ${l.reason ?? ''} ${l.exitCode ?? ''}`];
      const own = String(l.msg ?? '');
      if (l.msgId === LauncherLogIds.childStderr) return [`${who} stderr: ${own}`];
      const level = l.msgId === LauncherLogIds.childStdout ? parse(own)[0]?.level : undefined;
      return typeof level === 'number' && level >= 50 ? [`${who} ${own}`] : [];
    })
    .join('\n');
}
