import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CliLogIds } from '../../services/cli/log.js';
import { type Supervised, supervise } from '../../services/cli/up/supervise.js';
import { captureLogs } from '../support/logs.js';

const policy = { intervalsMs: [1, 1, 1], minUptimeMs: 60_000 };

/** A fake process: each `exit(…)` ends the current run; `restart` starts the next one. */
function fakeProcess(name = 'the launcher') {
  let end: (e: { unexpected: boolean; detail: string }) => void = () => {};
  let run = new Promise<{ unexpected: boolean; detail: string }>((r) => {
    end = r;
  });
  let restarts = 0;
  let restarted: () => void = () => {};
  const target: Supervised = {
    name,
    exited: () => run,
    restart: async () => {
      restarts++;
      run = new Promise((r) => {
        end = r;
      });
      restarted();
    },
  };
  return {
    target,
    restarts: () => restarts,
    crash: () => {
      const next = new Promise<void>((r) => {
        restarted = r;
      });
      end({ unexpected: true, detail: 'signal SIGKILL' });
      // Restarted, and supervise's report of it logged (it follows the restart's promise).
      return next.then(() => new Promise<void>((r) => setImmediate(r)));
    },
    stopByUp: () => end({ unexpected: false, detail: 'code 0' }),
  };
}

test('a process that exits on its own is restarted, each time, until up stops it', async () => {
  const logs = captureLogs('info');
  const stopping = new AbortController();
  const p = fakeProcess();
  const gaveUp: string[] = [];
  const done = supervise(p.target, {
    log: logs.logger,
    stopping: stopping.signal,
    onGiveUp: (m) => gaveUp.push(m),
    policy,
  });
  await p.crash();
  await p.crash();
  assert.equal(p.restarts(), 2);
  assert.equal(logs.withId(CliLogIds.superviseRestarting).length, 2);
  assert.equal(logs.withId(CliLogIds.superviseRestarted).length, 2);
  assert.match(String(logs.withId(CliLogIds.superviseRestarting)[0]?.msg), /signal SIGKILL/);
  p.stopByUp();
  await done;
  assert.equal(p.restarts(), 2, 'a stop by up is not restarted');
  assert.deepEqual(gaveUp, []);
});

test('past the last interval it gives up, once, and says so', async () => {
  const logs = captureLogs('info');
  const p = fakeProcess('nats-server n1');
  const gaveUp: string[] = [];
  const done = supervise(p.target, {
    log: logs.logger,
    stopping: new AbortController().signal,
    onGiveUp: (m) => gaveUp.push(m),
    policy,
  });
  for (let i = 0; i < 3; i++) await p.crash();
  void p.crash(); // the fourth failure in a row: no restart follows
  await done;
  assert.equal(p.restarts(), 3);
  assert.equal(gaveUp.length, 1);
  assert.match(gaveUp[0]!, /nats-server n1 exited \(signal SIGKILL\) 4 times in a row/);
  assert.equal(logs.withId(CliLogIds.superviseGaveUp).length, 1);
});

test('a crash while up is stopping is not restarted', async () => {
  const logs = captureLogs('info');
  const stopping = new AbortController();
  const p = fakeProcess();
  const done = supervise(p.target, {
    log: logs.logger,
    stopping: stopping.signal,
    onGiveUp: () => assert.fail('no give-up'),
    policy: { intervalsMs: [60_000], minUptimeMs: 60_000 },
  });
  void p.crash();
  // In its backoff: up stops, the wait ends at once and nothing is restarted.
  await new Promise((r) => setImmediate(r));
  stopping.abort();
  await done;
  assert.equal(p.restarts(), 0);
});
