import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { Bus } from '../../bus/index.js';
import { gatewayConfigSchema } from '../../services/gateway/config.js';
import { Gateway } from '../../services/gateway/gateway.js';

/**
 * A local view whose bucket never finishes loading; like the bus's views, `ready`
 * rejects with the abort reason when the view is stopped.
 */
class UnloadedView {
  readonly lastRevision = 0;
  readonly size = 0;
  private readonly stopper = new AbortController();
  readonly ready = new Promise<void>((_, reject) =>
    this.stopper.signal.addEventListener('abort', () => reject(this.stopper.signal.reason)),
  );

  constructor() {
    this.ready.catch(() => {});
  }
  stop(): void {
    this.stopper.abort();
  }
  onChange(): () => void {
    return () => {};
  }
  onEntry(): () => void {
    return () => {};
  }
  *entries(): IterableIterator<never> {}
}

/** A bus reached by nothing: its stores' views never load, events go nowhere. */
const unloadedBus = {
  connected: true,
  store: async () => ({ view: () => new UnloadedView(), put: async () => 0 }),
  publisher: () => ({ publish: async () => ({}) }),
} as unknown as Bus;

test('a gateway stopped before its views load stops cleanly, with no unhandled rejection', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    const config = gatewayConfigSchema.parse({
      id: 'gw-early',
      bus: { servers: ['nats://127.0.0.1:4222'] },
      listen: { host: '127.0.0.1', port: 0 },
      admin: { port: 0 },
    });
    const gateway = await Gateway.start(config, unloadedBus, pino({ level: 'silent' }));
    assert.match(gateway.notReady() ?? '', /is starting/);
    const ready = gateway.ready();
    await gateway.stop();
    await assert.rejects(ready, /gateway gw-early is stopping/);
    // Unhandled rejections are reported once the microtask queue is empty.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});
