import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, test } from 'node:test';
import { procStat } from '../../services/common/proc.js';
import { signalProcess, stopProcess } from '../../services/common/stop-process.js';

const spawned: number[] = [];
after(() => {
  for (const pid of spawned) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
});

/** A process that sleeps until signalled, with its exit as a promise. */
function sleeper() {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {
    stdio: 'ignore',
  });
  const pid = child.pid;
  assert.ok(pid, 'spawned');
  spawned.push(pid);
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once('exit', (_code, signal) => resolve(signal)),
  );
  return { pid, exited };
}

test('a process identified by its start time is stopped with the signal given', async () => {
  const { pid, exited } = sleeper();
  const start = procStat(pid)?.start;
  assert.ok(start !== undefined);
  assert.deepEqual(await stopProcess({ pid, start }, 'SIGTERM', 10_000), { killed: false });
  assert.equal(await exited, 'SIGTERM');
});

test('a pid whose start time is not the one given counts as gone and is not signalled', async () => {
  const { pid, exited } = sleeper();
  const start = procStat(pid)?.start;
  assert.ok(start !== undefined);
  const stranger = { pid, group: true, start: start + 1 };
  assert.deepEqual(await stopProcess(stranger, 'SIGTERM', 10_000), { killed: false });
  assert.equal(signalProcess(stranger, 'SIGTERM'), false);
  process.kill(pid, 'SIGKILL');
  assert.equal(await exited, 'SIGKILL', 'the first signal it got is the test’s own');
});

test('pid 1, pid 0 and negative pids are never signalled, whatever the caller read', async () => {
  // SIGCONT: harmless to anything it would reach if the guard failed.
  for (const pid of [1, 0, -1]) {
    assert.equal(signalProcess({ pid }, 'SIGCONT'), false, `pid ${pid}`);
    assert.equal(signalProcess({ pid, group: true }, 'SIGCONT'), false, `group ${pid}`);
    assert.deepEqual(await stopProcess({ pid }, 'SIGCONT', 100), { killed: false }, `pid ${pid}`);
  }
});
