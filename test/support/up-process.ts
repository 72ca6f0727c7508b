/**
 * `halyard up` run as a newcomer runs it, for end-to-end tests: on a free base port, its
 * terminal output read line by line, the locked bus reached as the CLI reaches it, and
 * everything it started killed at the end, whatever happened.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Bus } from '../../bus/index.js';
import { isPortFree, meshAdminPorts, PortOffsets } from '../../services/cli/up/ports.js';
import { busOptions, busSettings } from '../../services/common/bus-settings.js';
import { descendants } from './processes.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const NODES = 3;

/** A base port whose every derived port (the bus's and the mesh's) is free now. */
export async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    // Every port up to base+5040 stays below Linux's ephemeral range (32768 on), where an
    // outgoing connection could take a port between this check and the listen.
    const base = 20_000 + Math.floor(Math.random() * 700) * 10;
    const ports = [
      ...Object.values(PortOffsets).flatMap((o) =>
        Array.from({ length: NODES }, (_, i) => base + o + i),
      ),
      ...meshAdminPorts(base).map((p) => p.port),
    ];
    if ((await Promise.all(ports.map(isPortFree))).every(Boolean)) return base;
  }
  throw new Error('no free base port');
}

export class UpProcess {
  readonly stdout: string[] = [];
  readonly exit: Promise<number | null>;
  readonly servers: string[];
  /** Every process seen under `up` (it may be gone by the end): killed at `kill()`. */
  readonly seen = new Set<number>();
  private stderrText = '';

  private constructor(
    readonly child: ChildProcess,
    readonly dataDir: string,
    readonly basePort: number,
  ) {
    this.servers = Array.from({ length: NODES }, (_, i) => `nats://127.0.0.1:${basePort + i}`);
    this.exit = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderrText += chunk;
    });
    createInterface({ input: child.stdout! }).on('line', (line) => this.stdout.push(line));
  }

  /** `halyard up --data-dir … --base-port …` from the repository root, JSON logs on stderr. */
  static start(dataDir: string, basePort: number, extraArgs: readonly string[] = []): UpProcess {
    const child = spawn(
      process.execPath,
      [
        ...['--import', 'tsx', 'services/cli/main.ts', 'up'],
        ...['--data-dir', dataDir, '--base-port', String(basePort), ...extraArgs],
      ],
      {
        cwd: ROOT,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, HALYARD_LOG_FORMAT: 'json' },
      },
    );
    if (!child.pid) throw new Error('halyard up did not spawn');
    return new UpProcess(child, dataDir, basePort);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get stderr(): string {
    return this.stderrText;
  }

  /** `up`'s JSON log lines. */
  log(): Array<Record<string, unknown>> {
    return this.stderrText
      .split('\n')
      .flatMap((line) => (line.startsWith('{') ? [JSON.parse(line)] : []));
  }

  /** Resolves at "Ready in …"; rejects when `up` exits first or after `timeoutMs`. */
  ready(timeoutMs: number): Promise<void> {
    const output = () => `${this.stdout.join('\n')}\n${this.stderrText}`;
    return new Promise((resolve, reject) => {
      const check = setInterval(() => {
        if (!this.stdout.some((line) => /^Ready in /.test(line))) return;
        done();
        resolve();
      }, 50);
      const timer = setTimeout(() => {
        done();
        reject(new Error(`not ready in ${timeoutMs} ms\n${output()}`));
      }, timeoutMs);
      const done = () => {
        clearInterval(check);
        clearTimeout(timer);
      };
      void this.exit.then((code) => {
        done();
        reject(new Error(`halyard up exited (${code})\n${output()}`));
      });
    });
  }

  /** The gateways' addresses, from the summary `up` printed. */
  gatewayAddresses(): string[] {
    return this.stdout
      .map((line) => /^\s+gateway-\d+\s+(127\.0\.0\.1:\d+)/.exec(line)?.[1])
      .filter((address): address is string => address !== undefined);
  }

  /** The bus as the CLI reaches it on the locked local bus: the operator role of the data dir. */
  operatorBus(name: string): Promise<Bus> {
    const operator = busSettings.parse({
      servers: this.servers,
      roles: path.join(this.dataDir, 'bus', 'roles'),
      role: 'operator',
    });
    return Bus.connect(busOptions(operator, name, pino({ level: 'silent' })));
  }

  /** Remembers every process below `up` now, so that `kill()` finds it later. */
  noteProcesses(): void {
    for (const pid of descendants(this.pid)) this.seen.add(pid);
  }

  /** kill -9 of `up`, its process group and every process it was seen with; removes the data dir. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      signal(-this.pid);
    }
    for (const pid of [...this.seen, ...descendants(this.pid)]) signal(pid);
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

function signal(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone already.
  }
}
