/** Launchers for tests: configs in temp files, test children, events read back from the bus. */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { type Bus, ControlError, type LifecycleEvent, Subjects } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { tokenDigest } from '../../services/common/callers.js';
import { procStat } from '../../services/common/proc.js';
import { ControlCodecsOf } from '../../services/launcher/control.js';
import { Launcher } from '../../services/launcher/launcher.js';
import { LogIds } from '../../services/launcher/log-ids.js';
import { captureLogs } from './logs.js';
import { allPids } from './processes.js';
import { until } from './wait.js';

export const Kind = halyard.launcher.v1.LifecycleEvent.Kind;
export const State = halyard.launcher.v1.ProcessStatus.State;

/** Path of a test child script in test/support/children. */
export const child = (name: string) =>
  fileURLToPath(new URL(`./children/${name}.mjs`, import.meta.url));

/**
 * Callers of the gRPC control API, each with a service token in a file (a secret is
 * never an argument): `operator` is granted control, `monitor` read, `stranger` nothing.
 */
export type ControlCaller = 'operator' | 'monitor' | 'stranger';
const tokenDir = mkdtempSync(join(tmpdir(), 'halyard-control-tokens-'));
const tokenFiles = new Map<ControlCaller, string>();

/** The file holding `caller`'s token (created on first use). */
export function controlTokenFile(caller: ControlCaller): string {
  let file = tokenFiles.get(caller);
  if (!file) {
    file = join(tokenDir, `${caller}.token`);
    writeFileSync(file, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
    tokenFiles.set(caller, file);
  }
  return file;
}

/** The token read back from its file, as a client would. */
export const controlToken = (caller: ControlCaller) =>
  readFileSync(controlTokenFile(caller), 'utf8').trim();

/** The `control` section of a test launcher's config: the three callers above. */
export function controlAccess() {
  const callers: ControlCaller[] = ['operator', 'monitor', 'stranger'];
  return {
    tokens: callers.map((identity) => ({ sha256: tokenDigest(controlToken(identity)), identity })),
    grants: { operator: 'control', monitor: 'read' },
  };
}

export async function writeConfig(config: object, file?: string): Promise<string> {
  const path = file ?? join(await mkdtemp(join(tmpdir(), 'halyard-launcher-')), 'launcher.yaml');
  await writeFile(path, stringify(config));
  return path;
}

export async function startLauncher(bus: Bus, hostId: string, config: object, file?: string) {
  const logs = captureLogs('info');
  const configFile = await writeConfig({ hostId, control: controlAccess(), ...config }, file);
  const launcher = await Launcher.start({ configFile, bus, logger: logs.logger });
  return { launcher, logs, configFile };
}

/** Every lifecycle event of a host, as it arrives (a live subscription from the start of the stream). */
export async function collectEvents(bus: Bus, hostId: string) {
  const events: LifecycleEvent[] = [];
  const sub = await bus.subscribe(
    { kind: 'lifecycle', filter: `${hostId}.>`, from: 'all' },
    ({ event }) => {
      events.push(event);
    },
  );
  return { events, stop: () => sub.stop() };
}

export const kindName = (kind: number) => Kind[kind] as string;

/** Live (not zombie) processes of a process group, from /proc. */
export function groupMembers(pgid: number): number[] {
  return allPids().filter((pid) => {
    const stat = procStat(pid);
    return stat?.pgrp === pgid && stat.state !== 'Z';
  });
}

/** Whether the pid is a live (not zombie) process. */
export function pidAlive(pid: number): boolean {
  const state = procStat(pid)?.state;
  return state !== undefined && state !== 'Z';
}

const launcherMain = fileURLToPath(new URL('../../services/launcher/main.ts', import.meta.url));

export interface Running {
  readonly proc: ChildProcess;
  readonly lines: Array<Record<string, unknown>>;
  readonly stderr: string[];
  readonly exited: Promise<number | null>;
}

/** The launcher as operators run it: its own process, `main.ts`. */
export function runLauncher(args: string[]): Running {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', launcherMain, '--grpc', '127.0.0.1:0', '--admin-port', '0', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const lines: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line));
    } catch {
      // not a log line
    }
  });
  createInterface({ input: proc.stderr! }).on('line', (line) => stderr.push(line));
  const exited = new Promise<number | null>((resolve) =>
    proc.once('exit', (code) => resolve(code)),
  );
  return { proc, lines, stderr, exited };
}

export const listening = (r: Running) =>
  until('launcher listening', () => r.lines.find((l) => l.msgId === LogIds.listening), 30_000);

const display = async (bus: Bus, host: string) =>
  bus.request(Subjects.control('launcher', host, 'display'), {}, ControlCodecsOf.display);
/** The pids once every instance is READY; false until then (or while the launcher's interest reaches our node). */
export const readyPids = async (bus: Bus, host: string) => {
  const status = await display(bus, host).catch((e: unknown) => {
    if (e instanceof ControlError && e.code === 'UNAVAILABLE') return undefined;
    throw e;
  });
  if (!status) return false;
  return (
    status.processes.every((p) => p.state === State.READY) && status.processes.map((p) => p.pid)
  );
};
