/**
 * The web console in a real browser (Debian's chromium, headless, driven by
 * playwright-core) against a real 3-node bus, a real launcher running three test
 * children, and their registrations in the registry.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { request } from 'node:https';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { AffinityBucket, type Bus, type ServiceInstance } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { tokenDigest } from '../../services/common/callers.js';
import { type Console, startConsole } from '../../services/console/server.js';
import type { Launcher } from '../../services/launcher/launcher.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { makePki } from '../support/cache.js';
import { InstanceStatus, register } from '../support/gateway.js';
import { child, collectEvents, Kind, startLauncher } from '../support/launcher.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { gatewayEvent, preference, userKey } from '../support/samples.js';
import { until } from '../support/wait.js';

// What the functions run in the page use of the DOM (the project compiles without lib.dom).
declare const document: {
  querySelector(selector: string): { getAttribute(name: string): string | null } | null;
  querySelectorAll(selector: string): { length: number };
};
declare const window: { stayed?: boolean };

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
/** Set to a directory (e.g. docs/console) to save screenshots of the pages for the README. */
const SCREENSHOTS = process.env.HALYARD_CONSOLE_SCREENSHOTS;
const HOST = 'console-a';
// biome-ignore lint/suspicious/noTemplateCurlyInString: the launcher's port placeholder
const HEALTHZ = 'http://127.0.0.1:${PORT}/healthz';
const TOKEN = 'console-test-access-token-0123456789';

describe('web console', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let launcher: Launcher;
  let web: Console;
  let browser: Browser;
  let page: Page;
  const requested: string[] = [];
  const logs = captureLogs('warn');
  const stickyUsers = ['ada', 'grace', 'linus'].map(userKey);
  const registered: ServiceInstance[] = [];

  before(async () => {
    assert.ok(
      existsSync(CHROMIUM),
      `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does), or set CHROMIUM_BIN`,
    );
    ({ cluster, bus } = await startBusCluster('test-console', logs.logger));
    const live = await collectEvents(bus, HOST);
    ({ launcher } = await startLauncher(bus, HOST, {
      components: {
        greeter: {
          command: process.execPath,
          args: [child('service')],
          instances: 3,
          port: {},
          readiness: { http: HEALTHZ },
          restart: { intervals: [1], minUptimeSeconds: 1 },
          stop: { timeoutSeconds: 2 },
        },
      },
    }));
    const ready = await until('three greeters ready', () => {
      const ports = live.events.filter((e) => e.kind === Kind.READY).map((e) => e.port);
      return ports.length >= 3 && ports;
    });
    await live.stop();
    for (const [i, port] of ready.slice(0, 3).entries()) {
      registered[i] = await register(bus, {
        serviceId: 'greeter',
        instanceId: `greeter-${i + 1}`,
        address: `127.0.0.1:${port}`,
        hostId: HOST,
        metadata: { 'lb.policy': 'user', 'lb.whenDown': 'failover' },
      });
    }
    const affinity = await bus.store(AffinityBucket);
    for (const [n, key] of stickyUsers.entries()) {
      await affinity.put(
        preference({
          serviceId: 'greeter',
          userKey: key,
          instanceId: n < 2 ? 'greeter-1' : 'greeter-2',
        }),
      );
    }
    web = await startConsole({ bus, listen: '127.0.0.1:0', logger: logs.logger });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('request', (request) => requested.push(request.url()));
    await page.goto(web.url);
  });

  after(async () => {
    await browser?.close();
    await web?.close();
    await launcher?.shutdown();
    await bus?.close();
    await cluster?.close();
  });

  const stateOf = (processName: string) =>
    page.locator(`tr[data-process="${processName}"]`).getAttribute('data-state');

  test('the overview shows the three instances of the service, with their host and policy', async () => {
    await page.waitForFunction(
      () =>
        document.querySelectorAll('tr[data-instance^="greeter/"][data-status="UP"]').length === 3,
    );
    const row = page.locator('tr[data-instance="greeter/greeter-2"]');
    assert.match(
      (await row.textContent()) ?? '',
      new RegExp(`${HOST}.*127\\.0\\.0\\.1:\\d+.*user`),
    );
    await page.waitForFunction(
      () => document.querySelectorAll('tr[data-process^="console-a/greeter#"]').length === 3,
    );
    await page.waitForSelector('tr[data-stream="HALYARD_EVENTS"]');
    if (SCREENSHOTS) {
      await mkdir(SCREENSHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SCREENSHOTS, 'overview.png'), fullPage: true });
    }
  });

  test('kill -9 of a child shows it down, then restarting within 2 s, without reloading the page', async () => {
    const process2 = `${HOST}/greeter#2`;
    await until('greeter#2 ready on the page', async () => (await stateOf(process2)) === 'READY');
    const pid = Number(
      await page.locator(`tr[data-process="${process2}"]`).getAttribute('data-pid'),
    );
    assert.ok(pid > 0);
    await page.evaluate(() => {
      window.stayed = true;
    });
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    // Polled on every animation frame: a state shown for one frame is seen.
    await page.waitForFunction(
      (p) =>
        ['EXITED', 'BACKING_OFF'].includes(
          document.querySelector(`tr[data-process="${p}"]`)?.getAttribute('data-state') ?? '',
        ),
      process2,
      { timeout: 2000 },
    );
    assert.equal(
      await page.locator(`tr[data-process="${process2}"]`).getAttribute('class'),
      'bad',
      'a process that is down stands out',
    );
    await page.waitForFunction(
      ([p, old]) => {
        const row = document.querySelector(`tr[data-process="${p}"]`);
        const state = row?.getAttribute('data-state') ?? '';
        return (
          ['STARTING', 'RUNNING', 'READY'].includes(state) && row?.getAttribute('data-pid') !== old
        );
      },
      [process2, String(pid)] as const,
      { timeout: Math.max(1, killedAt + 2000 - Date.now()) },
    );
    assert.ok(
      Date.now() - killedAt <= 2000,
      `restarting shown ${Date.now() - killedAt} ms after the kill`,
    );
    assert.equal(await page.evaluate(() => window.stayed), true, 'same page, not reloaded');
  });

  test('the events page shows the exit, live and in a replay of the last minutes, and filters by host', async () => {
    await page.click('a[data-nav="events"]');
    const exited = page.locator('tr[data-event-kind="EXITED"]', { hasText: `${HOST}/greeter#2` });
    await exited.first().waitFor();
    assert.match((await exited.first().textContent()) ?? '', /signal SIGKILL/);
    await page.fill('#filter-host', 'no-such-host');
    await page.dispatchEvent('#filter-host', 'change');
    await page.waitForFunction(() => document.querySelectorAll('tr[data-event-kind]').length === 0);
    await page.fill('#filter-host', HOST);
    await page.dispatchEvent('#filter-host', 'change');
    await page.selectOption('#filter-type', 'lifecycle');
    await page.fill('#replay-since', '5m');
    await page.click('#replay');
    await page.locator('#replay-banner').waitFor();
    await exited.first().waitFor();
    const sources = await page.locator('tr[data-event-kind] td:nth-child(3)').allTextContents();
    assert.ok(sources.length > 0 && sources.every((s) => s === 'lifecycle'), sources.join(','));
  });

  test('the service timeline shows status changes and ejections as they happen', async () => {
    await page.goto(`${web.url}#/service/greeter`);
    await page.locator('.lane[data-lane="greeter-3"] .seg.UP').waitFor();
    const draining = {
      ...registered[2]!,
      status: InstanceStatus.DRAINING,
      renewedAtMs: Date.now(),
    };
    await register(bus, draining);
    await bus.publisher().publish({
      source: 'gateway',
      event: gatewayEvent({
        kind: halyard.gateway.v1.GatewayEvent.Kind.INSTANCE_EJECTED,
        gatewayId: 'gw-console',
        serviceId: 'greeter',
        instanceId: 'greeter-2',
        toInstanceId: '',
        userKey: '',
      }),
    });
    await page.locator('.lane[data-lane="greeter-3"] .seg.DRAINING').waitFor();
    await page.locator('.lane[data-lane="greeter-2"] .tick.EJECTED').waitFor();
    assert.equal(
      await page.locator('tr[data-instance="greeter/greeter-3"]').getAttribute('class'),
      'warn',
      'a draining instance stands out',
    );
    await register(bus, { ...registered[2]!, renewedAtMs: Date.now() });
    await page.locator('tr[data-instance="greeter/greeter-3"][data-status="UP"]').waitFor();
  });

  test('the service page shows instances, sticky users as counts per instance, and the lb settings', async () => {
    await page.goto(`${web.url}#/service/greeter`);
    await until(
      'sticky counts',
      async () => (await page.locator('td[data-sticky="greeter-1"]').textContent()) === '2',
    );
    assert.equal(await page.locator('td[data-sticky="greeter-2"]').textContent(), '1');
    assert.equal(await page.locator('td[data-sticky="greeter-3"]').textContent(), '0');
    const text = (await page.locator('main').textContent()) ?? '';
    assert.match(text, /lb\.policy\s*user/);
    assert.match(text, /lb\.whenDown\s*failover/);
    for (const key of stickyUsers) assert.ok(!text.includes(key), 'no user key on the page');
    assert.equal(await page.locator('.lane').count(), 3, 'a timeline lane per instance');
    if (SCREENSHOTS)
      await page.screenshot({ path: path.join(SCREENSHOTS, 'service.png'), fullPage: true });
  });

  test('the launcher page lists its processes, restarts and last exits', async () => {
    await page.goto(`${web.url}#/launcher/${HOST}`);
    const row = page.locator(`tr[data-process="${HOST}/greeter#2"]`);
    await until('the restart counted and the exit shown', async () => {
      const restarts = await row.locator('td:nth-child(6)').textContent();
      return restarts === '1' && /signal SIGKILL/.test((await row.textContent()) ?? '');
    });
    assert.equal(await page.locator('button').count(), 0, 'read-only: no control verbs');
  });

  test('the page loads nothing but what the console serves', () => {
    const origin = new URL(web.url).origin;
    assert.ok(requested.length > 0);
    const foreign = requested.filter(
      (url) => !url.startsWith(`${origin}/`) && !url.startsWith('data:'),
    );
    assert.deepEqual(foreign, []);
  });

  test('with access tokens configured, a missing or forged token is refused and the right one admitted', async () => {
    const guarded = await startConsole({
      bus,
      listen: '127.0.0.1:0',
      logger: logs.logger,
      tokens: [{ sha256: tokenDigest(TOKEN), identity: 'ops' }],
    });
    try {
      const status = async (path: string, headers: Record<string, string> = {}) =>
        (await fetch(new URL(path, guarded.url), { headers, redirect: 'manual' })).status;
      for (const p of ['/', '/app.js', '/api/state', '/api/stream', '/api/events?since=1m']) {
        assert.equal(await status(p), 401, `${p} without a token`);
        assert.equal(
          await status(p, { authorization: 'Bearer forged-token' }),
          401,
          `${p} forged bearer`,
        );
        assert.equal(
          await status(p, { cookie: 'halyard_console_token=forged-token' }),
          401,
          `${p} forged cookie`,
        );
      }
      assert.equal(await status('/?token=forged-token'), 401);
      assert.equal(await status('/api/state', { authorization: `Bearer ${TOKEN}` }), 200);

      const guest = await browser.newPage();
      try {
        const refused = await guest.goto(guarded.url);
        assert.equal(refused?.status(), 401);
        await guest.goto(`${guarded.url}?token=${TOKEN}`);
        assert.equal(new URL(guest.url()).search, '', 'the token leaves the address bar');
        await guest.waitForSelector('tr[data-instance="greeter/greeter-1"]');
        await guest.waitForSelector('#live.live');
      } finally {
        await guest.close();
      }
    } finally {
      await guarded.close();
    }
  });
  test('with TLS client certificates, only holders of one the CA signed are shown the console', async () => {
    const pki = makePki();
    const tls = { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.caFile };
    /** The status of GET /api/state, or the error that ended the connection. */
    const get = (url: string, client?: { certFile: string; keyFile: string }) =>
      new Promise<number | string>((resolve) => {
        const req = request(
          new URL('/api/state', url),
          {
            ca: readFileSync(pki.caFile),
            ...(client
              ? { cert: readFileSync(client.certFile), key: readFileSync(client.keyFile) }
              : {}),
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
        req.end();
      });
    const required = await startConsole({
      bus,
      listen: '127.0.0.1:0',
      logger: logs.logger,
      tls: { ...tls, requireClientCert: true },
    });
    try {
      assert.ok(required.url.startsWith('https://'));
      assert.equal(await get(required.url, pki.client('ops')), 200);
      assert.notEqual(await get(required.url), 200, 'no certificate');
      assert.notEqual(
        await get(required.url, pki.client('ops', { stranger: true })),
        200,
        'a stranger',
      );
    } finally {
      await required.close();
    }
    // Certificates optional beside tokens: either proves the caller.
    const either = await startConsole({
      bus,
      listen: '127.0.0.1:0',
      logger: logs.logger,
      tokens: [{ sha256: tokenDigest(TOKEN), identity: 'ops' }],
      tls: { ...tls, requireClientCert: false },
    });
    try {
      assert.equal(await get(either.url), 401);
      assert.equal(await get(either.url, pki.client('ops')), 200);
    } finally {
      await either.close();
    }
  });
});
