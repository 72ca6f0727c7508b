import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Bus, Codecs, type CommandResult, ControlError, Subjects } from '../../bus/index.js';
import { captureLogs } from '../support/logs.js';
import { NatsCluster } from '../support/nats-cluster.js';

const status = (hostId: string) => ({
  hostId,
  launcherId: `run-${hostId}`,
  startedAtMs: 1,
  processes: [],
  components: ['gateway'],
  version: '1',
});

const display = { request: Codecs.displayRequest, reply: Codecs.launcherStatus };
const stop = {
  request: Codecs.componentRequest,
  reply: Codecs.commandResult,
};
const result = (detail: string): CommandResult => ({ accepted: true, detail, status: null });

describe('bus control request/reply', () => {
  let cluster: NatsCluster;
  const buses: Bus[] = [];
  const logs = captureLogs('warn');

  before(async () => {
    cluster = await NatsCluster.start();
    for (let i = 0; i < 3; i++) {
      buses.push(
        await Bus.connect({ servers: cluster.servers[i]!, name: `ctl-${i}`, logger: logs.logger }),
      );
    }
  });
  after(async () => {
    for (const bus of buses) await bus.close();
    await cluster?.close();
  });

  test('one request to one responder; fan-out collects every responder; failures carry their code', async () => {
    const [asker, a, b] = buses as [Bus, Bus, Bus];
    const served = await Promise.all(
      [a, b].map((bus, i) => {
        const host = `host-${i}`;
        return Promise.all([
          bus.serve(
            [
              Subjects.control('launcher', host, 'display'),
              Subjects.control('launcher', '*', 'display'),
            ],
            display,
            async () => status(host),
          ),
          bus.serve([Subjects.control('launcher', host, 'stop')], stop, async (request) => {
            if (request.component !== 'gateway') {
              throw new ControlError('NOT_FOUND', `no component "${request.component}"`);
            }
            if (request.instance === 9) throw new Error('disk on fire');
            return result(`stopped on ${host}`);
          }),
        ]);
      }),
    );
    try {
      const one = await asker.request(
        Subjects.control('launcher', 'host-1', 'display'),
        {},
        display,
      );
      assert.deepEqual(one, status('host-1'));

      const all = await asker.requestMany(
        Subjects.control('launcher', '*', 'display'),
        {},
        display,
        500,
      );
      assert.deepEqual(all.map((r) => (r.ok ? r.value.hostId : r.error.message)).sort(), [
        'host-0',
        'host-1',
      ]);

      assert.deepEqual(
        await asker.request(
          Subjects.control('launcher', 'host-0', 'stop'),
          { component: 'gateway', instance: 0 },
          stop,
        ),
        result('stopped on host-0'),
      );
      await assert.rejects(
        asker.request(
          Subjects.control('launcher', 'host-0', 'stop'),
          { component: 'cache', instance: 0 },
          stop,
        ),
        (e: unknown) =>
          e instanceof ControlError &&
          e.code === 'NOT_FOUND' &&
          e.message === 'no component "cache"',
      );
      await assert.rejects(
        asker.request(
          Subjects.control('launcher', 'host-0', 'stop'),
          { component: 'gateway', instance: 9 },
          stop,
        ),
        (e: unknown) =>
          e instanceof ControlError && e.code === 'INTERNAL' && /disk on fire/.test(e.message),
      );
      // A request that does not validate is refused by the responder, named as such.
      const badRequest = {
        request: { ...Codecs.componentRequest, encode: () => new Uint8Array([0xff]) },
        reply: stop.reply,
      };
      await assert.rejects(
        asker.request(
          Subjects.control('launcher', 'host-0', 'stop'),
          { component: 'gateway', instance: 0 },
          badRequest,
        ),
        (e: unknown) => e instanceof ControlError && e.code === 'INVALID_ARGUMENT',
      );
    } finally {
      for (const s of served.flat()) s.stop();
    }
  });

  test('nobody listening: a request is UNAVAILABLE, a fan-out is empty', async () => {
    const [asker] = buses as [Bus];
    await assert.rejects(
      asker.request(Subjects.control('launcher', 'host-none', 'display'), {}, display, 500),
      (e: unknown) => e instanceof ControlError && e.code === 'UNAVAILABLE',
    );
    assert.deepEqual(
      await asker.requestMany(Subjects.control('launcher', '*', 'display'), {}, display, 300),
      [],
    );
  });
});
