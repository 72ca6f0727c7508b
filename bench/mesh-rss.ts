/**
 * Idle memory of the whole local mesh as `npm start` runs it (deploy/local/up.sh): once
 * `up` prints "Ready in …", waits --settle seconds, then samples the resident set size
 * (VmRSS) of every process below `up` — `up` itself, the 3 nats-server nodes, the
 * launcher and its children — once a second for --samples seconds. Prints each
 * process's median and the median of the sums, then stops the mesh with SIGINT (Ctrl-C).
 * PSS (proportional set size) is printed beside it: RSS counts the pages of the `node`
 * binary that every Node process shares once per process, PSS splits them among them.
 * The npm client that `npm start` adds on top is not part of the product and not counted.
 * Usage: bash bench/run.sh mesh-rss [--settle 30] [--samples 10]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { commandLineOf, residentBytesOf } from '../services/common/proc.js';
import { sleep } from '../services/common/sleep.js';
import { descendants } from '../test/support/processes.js';
import { freeBasePort } from '../test/support/up-process.js';

const { values } = parseArgs({
  options: {
    settle: { type: 'string', default: '30' },
    samples: { type: 'string', default: '10' },
  },
});
const SETTLE_MS = Number(values.settle) * 1000;
const SAMPLES = Number(values.samples);
const READY_TIMEOUT_MS = 180_000;

const median = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

/** A process's proportional set size in bytes; undefined when it is gone. */
function proportionalBytesOf(pid: number): number | undefined {
  try {
    const kib = /^Pss:\s+(\d+) kB$/m.exec(
      fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'),
    )?.[1];
    return kib === undefined ? undefined : Number(kib) * 1024;
  } catch {
    return undefined;
  }
}

/** A short name for a process of the mesh, from its command line. */
function nameOf(pid: number): string {
  const cmd = (commandLineOf(pid) ?? '').split('\0').join(' ');
  if (cmd.includes('nats-server')) return `nats-server ${/-n (\S+)/.exec(cmd)?.[1] ?? pid}`;
  const main = /services\/(\w+)\/main\.[jt]s/.exec(cmd)?.[1];
  const instance = /--(?:id|replica-id) (\S+)/.exec(cmd)?.[1];
  if (main === 'cli') return 'up (halyard CLI)';
  if (main) return instance ? `${main} ${instance}` : `${main} (pid ${pid})`;
  return cmd.slice(0, 60);
}

function waitReady(child: ChildProcess, stdout: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('mesh not ready in time')), READY_TIMEOUT_MS);
    child.once('exit', (code) => reject(new Error(`up exited (${code}): ${stdout.join('\n')}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      stdout.push(line);
      if (/^Ready in /.test(line)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

const basePort = await freeBasePort();
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'halyard-mesh-rss-'));
const up = spawn(
  'bash',
  ['deploy/local/up.sh', '--base-port', `${basePort}`, '--data-dir', dataDir],
  {
    detached: true,
    stdio: ['ignore', 'pipe', 'ignore'],
  },
);
const exited = once(up, 'exit');
const seen = new Set<number>();
try {
  const stdout: string[] = [];
  await waitReady(up, stdout);
  console.log(stdout.find((line) => /^Ready in /.test(line)));
  await sleep(SETTLE_MS);
  const perProcess = new Map<string, Array<{ rss: number; pss: number }>>();
  const totals: Array<{ rss: number; pss: number }> = [];
  for (let i = 0; i < SAMPLES; i++) {
    const total = { rss: 0, pss: 0 };
    for (const pid of [up.pid!, ...descendants(up.pid)]) {
      seen.add(pid);
      const rss = residentBytesOf(pid);
      const pss = proportionalBytesOf(pid);
      if (rss === undefined || pss === undefined) continue;
      total.rss += rss;
      total.pss += pss;
      const name = nameOf(pid);
      perProcess.set(name, [...(perProcess.get(name) ?? []), { rss, pss }]);
    }
    totals.push(total);
    await sleep(1000);
  }
  console.log(
    `\nIdle RSS of the local mesh (node ${process.version}; ${SETTLE_MS / 1000} s after ready, median of ${SAMPLES} samples 1 s apart)`,
  );
  console.log('| process | RSS MiB | PSS MiB |');
  console.log('|---|---|---|');
  const row = (name: string, xs: Array<{ rss: number; pss: number }>) =>
    `| ${name} | ${mib(median(xs.map((x) => x.rss)))} | ${mib(median(xs.map((x) => x.pss)))} |`;
  for (const [name, xs] of [...perProcess].sort(([a], [b]) => a.localeCompare(b))) {
    console.log(row(name, xs));
  }
  const rss = median(totals.map((x) => x.rss));
  console.log(row(`**total (${perProcess.size} processes)**`, totals));
  console.log(
    `\nTotal RSS ${mib(rss)} MiB = ${(rss / 2 ** 30).toFixed(2)} GiB = ${(rss / 1e9).toFixed(2)} GB`,
  );
} finally {
  if (up.exitCode === null) process.kill(up.pid!, 'SIGINT');
  await Promise.race([exited, sleep(60_000)]);
  for (const pid of [-up.pid!, ...seen]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
}
