import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, test } from 'node:test';
import { environmentValueOf, isMarkedProcess, procStat } from '../../services/common/proc.js';

const spawned: number[] = [];
after(() => {
  for (const pid of spawned) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
});

const MARKER = { name: 'HALYARD_TEST_MARKER', value: 'host-a/svc/1' };

function sleep(env: NodeJS.ProcessEnv) {
  const child = spawn('sleep', ['60'], { stdio: 'ignore', env });
  assert.ok(child.pid, 'spawned');
  spawned.push(child.pid);
  const start = procStat(child.pid)?.start;
  assert.ok(start !== undefined);
  return { pid: child.pid, start };
}

test('a process started with the marker and seen at its start time is recognised', () => {
  const { pid, start } = sleep({ ...process.env, [MARKER.name]: MARKER.value });
  assert.equal(environmentValueOf(pid, MARKER.name), MARKER.value);
  assert.equal(isMarkedProcess(pid, start, MARKER), true);
  assert.equal(isMarkedProcess(pid, start + 1, MARKER), false, 'another start time');
  assert.equal(isMarkedProcess(pid, start, { ...MARKER, value: 'host-b/svc/1' }), false);
});

test('an unrelated process (no marker) at the right start time is not recognised', () => {
  const { pid, start } = sleep({ PATH: process.env.PATH });
  assert.equal(environmentValueOf(pid, MARKER.name), undefined);
  assert.equal(isMarkedProcess(pid, start, MARKER), false);
});

test('pid 1 and non-pids are never recognised', () => {
  const init = procStat(1)?.start ?? 0;
  assert.equal(isMarkedProcess(1, init, MARKER), false);
  assert.equal(isMarkedProcess(0, 0, MARKER), false);
  assert.equal(isMarkedProcess(Number.NaN, 0, MARKER), false);
});
