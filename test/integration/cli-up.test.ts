/**
 * `halyard up` as a user runs it: a real process, a real 3-node cluster on fixed ports,
 * a second `up` on the same data dir refused, Ctrl-C (SIGINT) stops everything.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { AllBuckets, Bus, EVENTS_STREAM, kvStream } from '../../bus/index.js';
import { type Jsz, monitorJson } from '../../services/cli/nats-monitor.js';
import { isPortFree } from '../../services/cli/up/ports.js';
import { busOptions, busSettings } from '../../services/common/bus-settings.js';
import { commandLineOf } from '../../services/common/proc.js';
import { allPids } from '../support/processes.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const READY_TIMEOUT_MS = 15_000;
const EXIT_TIMEOUT_MS = 15_000;
/** `up` derives client, route and monitoring ports from its base port. */
const OFFSETS = [0, 1, 2, 2000, 2001, 2002, 4000, 4001, 4002];

interface UpProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly stdout: string[];
  stderr: string;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first stdout line matching `pattern`; rejects on exit or timeout. */
  line(pattern: RegExp, timeoutMs: number): Promise<string>;
}

const started: UpProcess[] = [];
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'halyard-cli-up-'));
let bus: Bus | undefined;

after(async () => {
  await bus?.close().catch(() => {});
  for (const up of started) {
    if (up.child.exitCode !== null || up.child.signalCode !== null) continue;
    try {
      process.kill(-up.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  // The servers run in their own process groups (so that Ctrl-C reaches only `up`).
  for (const pid of natsServersOf(dataDir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function startUp(basePort: number): UpProcess {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'services/cli/main.ts',
      'up',
      '--bus-only',
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
  assert.ok(child.pid, 'halyard up did not spawn');
  const stdout: string[] = [];
  const waiters = new Set<(line: string) => void>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    stdout.push(line);
    for (const w of waiters) w(line);
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const up: UpProcess = {
    child,
    pid: child.pid,
    stdout,
    stderr: '',
    exit,
    line(pattern, timeoutMs) {
      const seen = stdout.find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const fail = (why: string) => {
          waiters.delete(onLine);
          clearTimeout(timer);
          reject(
            new Error(
              `${why} waiting for ${pattern}\nstdout:\n${stdout.join('\n')}\nstderr:\n${up.stderr}`,
            ),
          );
        };
        const onLine = (l: string) => {
          if (!pattern.test(l)) return;
          waiters.delete(onLine);
          clearTimeout(timer);
          resolve(l);
        };
        const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs);
        waiters.add(onLine);
        void exit.then(({ code, signal }) => fail(`halyard up exited (${code ?? signal})`));
      });
    },
  };
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    up.stderr += chunk;
  });
  started.push(up);
  return up;
}

async function within<T>(what: string, promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: no result after ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A base port whose nine derived ports are all free (below the ephemeral range). */
async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * 18_000);
    const free = await Promise.all(OFFSETS.map((o) => isPortFree(base + o)));
    if (free.every(Boolean)) return base;
  }
  throw new Error('no base port with 9 free ports found');
}

/** Pids of nats-server processes running a config from `dir`. */
function natsServersOf(dir: string): number[] {
  return allPids().filter((pid) => {
    const cmd = commandLineOf(pid) ?? '';
    return cmd.includes('nats-server') && cmd.includes(dir);
  });
}

test('halyard up runs a provisioned 3-node bus, refuses a second up, stops on SIGINT', async (t) => {
  const base = await freeBasePort();
  const t0 = Date.now();
  const first = startUp(base);
  await first.line(/^Ready in /, READY_TIMEOUT_MS);
  t.diagnostic(`up ready after ${Date.now() - t0} ms (base port ${base})`);

  const urlsLine = first.stdout.find((l) => l.trim().startsWith('NATS URLs')) ?? '';
  const servers = urlsLine.match(/nats:\/\/[^\s,]+/g) ?? [];
  assert.deepEqual(
    servers,
    [0, 1, 2].map((i) => `nats://127.0.0.1:${base + i}`),
  );

  // What `up` provisioned, as the server reports it, before this test provisions anything.
  const jsz = (await monitorJson(base + 4000, '/jsz?accounts=true&streams=true&config=true')) as
    | Jsz
    | undefined;
  const replicasOf = new Map(
    (jsz?.account_details ?? [])
      .flatMap((a) => a.stream_detail ?? [])
      .map((s) => [s.name, s.config?.num_replicas]),
  );
  for (const stream of [EVENTS_STREAM, ...AllBuckets.map((b) => kvStream(b.name))]) {
    assert.equal(replicasOf.get(stream), 3, `stream ${stream} with 3 replicas`);
  }

  // The locked local bus's admin role, the one allowed to provision.
  const admin = busSettings.parse({
    servers,
    roles: path.join(dataDir, 'bus', 'roles'),
    role: 'admin',
  });
  bus = await Bus.connect(busOptions(admin, 'cli-up-test', pino({ level: 'silent' })));
  assert.equal(bus.replicas, 3);
  await bus.provision();
  await bus.close();
  bus = undefined;

  const second = startUp(base);
  const refused = await within('second halyard up', second.exit, EXIT_TIMEOUT_MS);
  assert.deepEqual(refused, { code: 1, signal: null }, second.stderr);
  assert.match(second.stderr, new RegExp(`already running .*\\(pid ${first.pid}\\b`));
  assert.match(second.stderr, new RegExp(`nats://127\\.0\\.0\\.1:${base}\\b`));

  const t1 = Date.now();
  process.kill(-first.pid, 'SIGINT'); // what Ctrl-C in a terminal does: the whole foreground group
  const stopped = await within('halyard up after SIGINT', first.exit, EXIT_TIMEOUT_MS);
  t.diagnostic(`stopped ${Date.now() - t1} ms after SIGINT`);
  assert.deepEqual(stopped, { code: 0, signal: null }, first.stderr);
  assert.deepEqual(natsServersOf(dataDir), []);
  assert.equal(fs.existsSync(path.join(dataDir, 'up.lock')), false);
  assert.match(first.stderr, /"msgId":"HALX0012I"/);
});
