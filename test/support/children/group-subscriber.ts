/**
 * Test child: one replica of a subscriber group. Its effect for each event is a file
 * named by the event's sequence in a directory the replicas share, created only if
 * absent: a redelivered event whose effect another replica (or a killed one) already
 * made is acknowledged without a second effect. Each event takes `workMs` to handle.
 * It prints JSON lines: `ready` once subscribed, then per delivery its `seq`, `attempt`
 * and whether it `applied` the effect.
 *
 *   node --import tsx test/support/children/group-subscriber.ts <servers> <group> <host> <dir> <workMs>
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Bus } from '../../../bus/index.js';
import { sleep } from '../../../services/common/sleep.js';

const [servers = '', group = 'test', host = 'host', dir = '.', workMs = '0'] =
  process.argv.slice(2);
const print = (line: object) =>
  process.stdout.write(`${JSON.stringify({ ...line, pid: process.pid })}\n`);

/** The effect, once per sequence whichever replica makes it; false if already made. */
function applyOnce(seq: number): boolean {
  try {
    writeFileSync(join(dir, String(seq)), String(process.pid), { flag: 'wx' });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

const bus = await Bus.connect({
  servers: servers.split(','),
  name: `group-subscriber-${process.pid}`,
  logger: pino({ level: 'error' }),
});
const subscription = await bus.subscribe(
  { kind: 'lifecycle', filter: `${host}.>`, from: 'all', group, prefetch: 16, ackWaitMs: 2000 },
  async (_event, { seq, attempt }) => {
    await sleep(Number(workMs)); // the handling time asked for: a deliberate pause
    print({ seq, attempt, applied: applyOnce(seq) });
  },
);
process.once('SIGTERM', async () => {
  await subscription.stop();
  await bus.close();
  process.exit(0);
});
print({ ready: true });
