/**
 * Test child: a candidate for a leader lease. It holds the lease whenever it can and
 * prints JSON lines: `acquired` and `lost` with the fencing token, and `act` every
 * 50 ms while `isHeld()` (what a singleton extender would do only as the holder). On
 * SIGTERM it releases the lease and exits 0.
 *
 *   node --import tsx test/support/children/lease-holder.ts <servers> <name> <ttlMs>
 */
import { pino } from 'pino';
import { Bus, type LeaseHold } from '../../../bus/index.js';
import { sleep } from '../../../services/common/sleep.js';

const [servers = '', name = 'test', ttl = '2000'] = process.argv.slice(2);
const print = (line: object) =>
  process.stdout.write(`${JSON.stringify({ ...line, pid: process.pid, at: Date.now() })}\n`);

const bus = await Bus.connect({
  servers: servers.split(','),
  name: `lease-holder-${process.pid}`,
  logger: pino({ level: 'error' }),
});
let hold: LeaseHold | undefined;
let stopping = false;
process.once('SIGTERM', async () => {
  stopping = true;
  await hold?.release();
  process.exit(0);
});
print({ event: 'candidate' });
while (!stopping) {
  hold = await bus.lease(name, { ttlMs: Number(ttl), holder: `test-${process.pid}` });
  const { token } = hold;
  print({ event: 'acquired', token });
  while (hold.isHeld()) {
    print({ event: 'act', token });
    await sleep(50); // the pace of a holder's work: a deliberate pause, not a wait
  }
  print({ event: 'lost', token, reason: String(hold.lost.reason) });
}
