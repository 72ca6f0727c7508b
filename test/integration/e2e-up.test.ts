/**
 * End to end, as a newcomer runs it: `halyard up` in a fresh data dir on free ports, real
 * processes (3 nats-servers, a launcher, 2 discovery replicas, 2 gateways, the cache,
 * 3 greeters). Calls through both gateways; kill -9 of a greeter: calls keep working,
 * the launcher's restart shows up as lifecycle events; Ctrl-C (SIGINT) leaves no process.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { Bus, type LifecycleEvent, Subjects } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { isPortFree } from '../../services/cli/local-nats.js';
import { busOptions, busSettings } from '../../services/common/bus-settings.js';
import { serviceDefinition } from '../../services/common/grpc.js';
import { procStat } from '../../services/common/proc.js';
import { ControlCodecsOf } from '../../services/launcher/control.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const READY_TIMEOUT_MS = 60_000;
const EXIT_TIMEOUT_MS = 30_000;
/** A greeter killed with -9 is restarted (first restart interval 1 s) and READY again. */
const RESTART_TIMEOUT_MS = 20_000;
const Kind = halyard.launcher.v1.LifecycleEvent.Kind;
/** Ports `up` uses from its base: the bus's, then the mesh's admin ports. */
const OFFSETS = [
  0, 1, 2, 2000, 2001, 2002, 4000, 4001, 4002, 5000, 5001, 5011, 5012, 5021, 5022, 5031,
];

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'halyard-e2e-'));
const seenPids = new Set<number>();
let up: ChildProcess | undefined;
let bus: Bus | undefined;
const clients: grpc.Client[] = [];

after(async () => {
  for (const c of clients) c.close();
  await bus?.close().catch(() => {});
  if (up?.pid && up.exitCode === null && up.signalCode === null) {
    try {
      process.kill(-up.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const pid of [...seenPids, ...descendants(up?.pid)]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** Every live process below `root` (by parent pid), from /proc. */
function descendants(root: number | undefined): number[] {
  if (!root) return [];
  const parents = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = procStat(Number(entry))?.ppid; // undefined: exited meanwhile
    if (ppid !== undefined) parents.set(Number(entry), ppid);
  }
  const found: number[] = [];
  const walk = (pid: number) => {
    for (const [child, parent] of parents) {
      if (parent === pid) {
        found.push(child);
        walk(child);
      }
    }
  };
  walk(root);
  return found;
}

function alive(pid: number): boolean {
  const state = procStat(pid)?.state;
  // A zombie is gone for our purpose.
  return state !== undefined && state !== 'Z';
}

async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 1000) * 10;
    const free = await Promise.all(OFFSETS.map((o) => isPortFree(base + o)));
    if (free.every(Boolean)) return base;
  }
  throw new Error('no free base port');
}

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
  up = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'services/cli/main.ts',
      'up',
      '--data-dir',
      dataDir,
      '--base-port',
      String(basePort),
    ],
    {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HALYARD_LOG_FORMAT: 'json' },
    },
  );
  const upPid = up.pid;
  assert.ok(upPid);
  let stderr = '';
  up.stderr?.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  const stdout: string[] = [];
  const exit = new Promise<number | null>((resolve) => up?.once('exit', (code) => resolve(code)));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(new Error(`not ready in ${READY_TIMEOUT_MS} ms\n${stdout.join('\n')}\n${stderr}`)),
      READY_TIMEOUT_MS,
    );
    void exit.then((code) =>
      reject(new Error(`halyard up exited (${code})\n${stdout.join('\n')}\n${stderr}`)),
    );
    createInterface({ input: up!.stdout! }).on('line', (line) => {
      stdout.push(line);
      if (/^Ready in /.test(line)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  await ready;
  const readyMs = Date.now() - t0;
  t.diagnostic(`mesh ready after ${readyMs} ms (base port ${basePort})`);

  // The summary names both gateways and says how to call the demo through them.
  const gateways = stdout
    .map((l) => /^\s+gateway-\d+\s+(127\.0\.0\.1:\d+)/.exec(l)?.[1])
    .filter((a): a is string => a !== undefined);
  assert.equal(gateways.length, 2, stdout.join('\n'));
  assert.ok(stdout.some((l) => l.includes('halyard call') && l.includes(gateways[1]!)));

  const servers = [0, 1, 2].map((i) => `nats://127.0.0.1:${basePort + i}`);
  // As the CLI does on the locked local bus: the operator role of `up`'s data dir.
  const operator = busSettings.parse({
    servers,
    roles: path.join(dataDir, 'bus', 'roles'),
    role: 'operator',
  });
  bus = await Bus.connect(busOptions(operator, 'e2e', pino({ level: 'silent' })));
  for (const pid of descendants(upPid)) seenPids.add(pid);

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
  for (const pid of descendants(upPid)) seenPids.add(pid);
  const again = await sayHello(clients[1]!, 'after restart');
  assert.match(again.message, /after restart/);
  await bus.close();
  bus = undefined;
  for (const c of clients.splice(0)) c.close();

  // Ctrl-C: everything stops, in order, and nothing is left behind.
  const stopping = Date.now();
  process.kill(upPid, 'SIGINT');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    exit,
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), EXIT_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  assert.equal(code, 0, `halyard up did not exit cleanly (${code})\n${stderr.slice(-3000)}`);
  t.diagnostic(`stopped ${Date.now() - stopping} ms after SIGINT`);
  const left = [...seenPids].filter(alive);
  assert.deepEqual(left, [], 'processes left behind');
  assert.match(stderr, /HALX0013I/, 'the mesh was stopped through its launcher');
  // The lifecycle events of the stop, as up shows them.
  const stopped = stdout.filter((l) => /^\s+■ \S+\s+stopped$/.test(l));
  assert.equal(stopped.length, 8, stdout.join('\n'));
  up.stdout?.destroy();
  up.stderr?.destroy();
});
