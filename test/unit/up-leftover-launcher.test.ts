/**
 * `halyard up` stops a launcher an earlier, killed `up` left running — and only that: the
 * pid in `<data-dir>/logs/launcher.pid` is signalled only when the process carries `up`'s
 * marker and the recorded start time, and runs the launcher with this config.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import {
  LAUNCHER_MAIN,
  stopLeftoverLauncher,
  UP_LAUNCHER_MARKER_ENV,
} from '../../services/cli/mesh.js';
import { procStat } from '../../services/common/proc.js';
import { captureLogs } from '../support/logs.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'halyard-leftover-launcher-'));
const logFile = path.join(dir, 'logs', 'launcher.log');
const pidFile = path.join(dir, 'logs', 'launcher.pid');
const configFile = path.join(dir, 'mesh.yaml');
fs.mkdirSync(path.dirname(logFile), { recursive: true });

const spawned: number[] = [];
after(() => {
  for (const pid of spawned) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {}
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A stand-in launcher: a shell whose command line names the launcher and the config. */
function standIn(env: NodeJS.ProcessEnv) {
  const child = spawn('bash', ['-c', 'sleep 30; :', LAUNCHER_MAIN, '--config', configFile], {
    stdio: 'ignore',
    detached: true,
    env,
  });
  assert.ok(child.pid);
  spawned.push(child.pid);
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once('exit', (_code, signal) => resolve(signal)),
  );
  const start = procStat(child.pid)?.start;
  assert.ok(start !== undefined);
  return {
    pid: child.pid,
    start,
    exited,
    isRunning: () => child.exitCode === null && child.signalCode === null,
  };
}

const writePidFile = (content: object) => fs.writeFileSync(pidFile, `${JSON.stringify(content)}\n`);

test('a process without the marker is never signalled, though the pid file, start time and command line match', async () => {
  const stranger = standIn({ PATH: process.env.PATH });
  writePidFile({ pid: stranger.pid, start: stranger.start });
  await stopLeftoverLauncher(logFile, configFile, captureLogs().logger, 2_000);
  assert.ok(stranger.isRunning(), 'left alone');
  assert.equal(fs.existsSync(pidFile), false, 'the stale pid file is removed');
});

test('the marked launcher at another start time (a reused pid) is never signalled', async () => {
  const launcher = standIn({ ...process.env, [UP_LAUNCHER_MARKER_ENV]: logFile });
  writePidFile({ pid: launcher.pid, start: launcher.start + 1 });
  await stopLeftoverLauncher(logFile, configFile, captureLogs().logger, 2_000);
  assert.ok(launcher.isRunning(), 'left alone');
});

test('the launcher the pid file names, with its marker and start time, is stopped', async () => {
  const launcher = standIn({ ...process.env, [UP_LAUNCHER_MARKER_ENV]: logFile });
  writePidFile({ pid: launcher.pid, start: launcher.start });
  const logs = captureLogs();
  await stopLeftoverLauncher(logFile, configFile, logs.logger, 5_000);
  assert.equal(await launcher.exited, 'SIGTERM');
  assert.equal(logs.lines.length, 1, 'one warning naming it');
});
