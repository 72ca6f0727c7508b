/** Launchers for tests: configs in temp files, test children, events read back from the bus. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { Bus, LifecycleEvent } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { tokenDigest } from '../../services/common/callers.js';
import { procStat } from '../../services/common/proc.js';
import { Launcher } from '../../services/launcher/launcher.js';
import { captureLogs } from './logs.js';

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
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((pid) => {
      const stat = procStat(pid);
      return stat?.pgrp === pgid && stat.state !== 'Z';
    });
}

/** Whether the pid is a live (not zombie) process. */
export function pidAlive(pid: number): boolean {
  const state = procStat(pid)?.state;
  return state !== undefined && state !== 'Z';
}
