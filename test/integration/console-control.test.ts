/**
 * The console's control verbs in a real browser (Debian's chromium, headless, driven by
 * playwright-core) against a real 3-node bus and a real launcher: a confirmed restart
 * from the launcher page restarts the component (its lifecycle events say so), a
 * cancelled one sends nothing, and a console without tokens or control, or a request
 * without the page's anti-forgery proofs, acts on nothing.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { register } from 'prom-client';
import type { Bus } from '../../bus/index.js';
import { halyard } from '../../proto/gen/halyard.js';
import { tokenDigest } from '../../services/common/callers.js';
import { CSRF_HEADER } from '../../services/console/control.js';
import { ConsoleLogIds } from '../../services/console/log-ids.js';
import { type Console, startConsole } from '../../services/console/server.js';
import type { Launcher } from '../../services/launcher/launcher.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { child, collectEvents, Kind, startLauncher } from '../support/launcher.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
/** Set to a directory (e.g. docs/console) to save a screenshot of the launcher page. */
const SCREENSHOTS = process.env.HALYARD_CONSOLE_SCREENSHOTS;
const HOST = 'console-ctl';
// biome-ignore lint/suspicious/noTemplateCurlyInString: the launcher's port placeholder
const HEALTHZ = 'http://127.0.0.1:${PORT}/healthz';
const TOKEN = 'console-control-test-token-0123456789';
const { State } = halyard.launcher.v1.ProcessStatus;
const tokens = [{ sha256: tokenDigest(TOKEN), identity: 'ops-alice' }];

type LifecycleEvents = Awaited<ReturnType<typeof collectEvents>>['events'];

/** The lifecycle events of `kind` for instance `instance` since `since` (ms). */
const eventsOf = (events: LifecycleEvents, kind: number, instance: number, since: number) =>
  events.filter(
    (e) => e.kind === kind && e.instance === instance && Number(e.occurredAtMs) >= since,
  );

/** What /api/session and /api/control answer. */
interface Answer {
  readonly control?: boolean;
  readonly identity?: string;
  readonly csrf?: string;
  readonly accepted?: boolean;
  readonly error?: string;
}
const answer = async (res: Response) => (await res.json()) as Answer;

async function counter(name: string, labels: Record<string, string>): Promise<number> {
  const metric = await register.getSingleMetric(name)?.get();
  const found = metric?.values.find((v) =>
    Object.entries(labels).every(([k, value]) => v.labels[k] === value),
  );
  return found?.value ?? 0;
}

describe('web console control verbs', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let launcher: Launcher;
  let live: Awaited<ReturnType<typeof collectEvents>>;
  let web: Console;
  let browser: Browser;
  let page: Page;
  const posts: string[] = [];
  const logs = captureLogs('info');

  before(async () => {
    assert.ok(
      existsSync(CHROMIUM),
      `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does), or set CHROMIUM_BIN`,
    );
    ({ cluster, bus } = await startBusCluster('test-console-ctl', logs.logger));
    live = await collectEvents(bus, HOST);
    ({ launcher } = await startLauncher(bus, HOST, {
      components: {
        greeter: {
          command: process.execPath,
          args: [child('service')],
          instances: 2,
          port: {},
          readiness: { http: HEALTHZ },
          restart: { intervals: [1], minUptimeSeconds: 1 },
          stop: { timeoutSeconds: 2 },
        },
      },
    }));
    await until(
      'two greeters ready',
      () => new Set(live.events.filter((e) => e.kind === Kind.READY).map((e) => e.instance)).size,
    );
    web = await startConsole({
      bus,
      listen: '127.0.0.1:0',
      logger: logs.logger,
      tokens,
      control: true,
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('request', (request) => {
      if (request.method() === 'POST') posts.push(request.url());
    });
    await page.goto(`${web.url}?token=${TOKEN}`);
    await page.goto(`${web.url}#/launcher/${HOST}`);
  });

  after(async () => {
    await browser?.close();
    await web?.close();
    await live?.stop();
    await launcher?.shutdown();
    await bus?.close();
    await cluster?.close();
  });

  const processState = (instance: number) => {
    const found = launcher.display().processes.find((p) => p.instance === instance);
    return found ? State[found.state] : undefined;
  };

  const button = (verb: string, target: string) =>
    page.locator(`button[data-verb="${verb}"][data-target="${target}"]`);

  test('cancelling the confirmation sends nothing', async () => {
    await button('stop', 'greeter#1').click();
    const dialog = page.locator('dialog#confirm');
    await dialog.waitFor();
    assert.match((await dialog.textContent()) ?? '', new RegExp(`stop greeter#1 on ${HOST}\\?`));
    const since = Date.now();
    await page.click('#confirm-cancel');
    await dialog.waitFor({ state: 'hidden' });
    // A request the page made is reported before any later round trip to it returns.
    await page.evaluate(() => 0);
    assert.deepEqual(posts, [], 'no POST');
    assert.equal(await page.locator('tr[data-action]').count(), 0, 'no action listed');
    assert.equal(processState(1), 'READY', 'the launcher still runs it');
    assert.deepEqual(eventsOf(live.events, Kind.STOPPING, 1, since), []);
  });

  test('with a token, a confirmed restart of a component from the page restarts it: the lifecycle events show it', async () => {
    const before = await counter('halyard_console_control_total', {
      verb: 'restart',
      outcome: 'accepted',
    });
    const since = Date.now();
    await button('restart', 'greeter').click();
    await page.locator('dialog#confirm').waitFor();
    assert.match(
      (await page.textContent('#confirm-text')) ?? '',
      /restart greeter \(every instance\)/,
    );
    await page.click('#confirm-ok');
    await page.locator('tr[data-action][data-outcome="accepted"]').waitFor({ timeout: 60_000 });
    assert.deepEqual(posts, [new URL('/api/control', web.url).href]);
    if (SCREENSHOTS) {
      await mkdir(SCREENSHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SCREENSHOTS, 'launcher.png'), fullPage: true });
    }
    for (const instance of [1, 2]) {
      await until(
        `greeter#${instance} stopped, started and ready again`,
        () =>
          eventsOf(live.events, Kind.STOPPING, instance, since).length === 1 &&
          eventsOf(live.events, Kind.STARTING, instance, since).length === 1 &&
          eventsOf(live.events, Kind.READY, instance, since).length === 1,
      );
    }
    assert.match(
      (await page.locator('tr[data-action][data-outcome="accepted"]').textContent()) ?? '',
      new RegExp(`restart greeter \\(every instance\\) on ${HOST}`),
    );
    assert.equal(
      await counter('halyard_console_control_total', { verb: 'restart', outcome: 'accepted' }),
      before + 1,
    );
    const [logged] = logs.withId(ConsoleLogIds.controlSent);
    assert.equal(logged?.identity, 'ops-alice');
    assert.equal(logged?.verb, 'restart');
    assert.equal(logged?.component, 'greeter');
    assert.ok(
      !JSON.stringify(logs.lines).includes(TOKEN),
      'the token is never logged, only who it names',
    );
  });

  test('a POST without the page’s anti-forgery proofs is refused with 403 and acts on nothing', async () => {
    const session = await answer(
      await fetch(new URL('/api/session', web.url), {
        headers: { authorization: `Bearer ${TOKEN}` },
      }),
    );
    assert.equal(session.control, true);
    assert.equal(session.identity, 'ops-alice');
    const csrf = String(session.csrf);
    const body = JSON.stringify({ host: HOST, verb: 'stop', component: 'greeter', instance: 2 });
    const post = (headers: Record<string, string>, content = body) =>
      fetch(new URL('/api/control', web.url), { method: 'POST', headers, body: content });
    const json = { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` };
    const forbiddenBefore = await counter('halyard_console_control_forbidden_total', {
      reason: 'forgery',
    });
    const sentBefore = await counter('halyard_console_control_total', {
      verb: 'stop',
      outcome: 'accepted',
    });
    const since = Date.now();
    const forged: Array<[string, Record<string, string>, string?]> = [
      ['no anti-forgery header', json],
      ['a wrong anti-forgery header', { ...json, [CSRF_HEADER]: `${csrf.slice(1)}x` }],
      [
        'a form post',
        {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Bearer ${TOKEN}`,
          [CSRF_HEADER]: csrf,
        },
        'host=x',
      ],
      ['another origin', { ...json, [CSRF_HEADER]: csrf, origin: 'https://evil.example' }],
      ['a cross-site fetch', { ...json, [CSRF_HEADER]: csrf, 'sec-fetch-site': 'cross-site' }],
    ];
    for (const [what, headers, content] of forged) {
      const res = await post(headers, content);
      assert.equal(res.status, 403, what);
      assert.ok((await answer(res)).error, `${what}: a reason`);
    }
    const noToken = await post({ 'content-type': 'application/json', [CSRF_HEADER]: csrf });
    assert.equal(noToken.status, 403);
    assert.match((await answer(noToken)).error ?? '', /access token/);
    assert.equal(
      await counter('halyard_console_control_forbidden_total', { reason: 'forgery' }),
      forbiddenBefore + forged.length,
    );
    assert.equal(
      await counter('halyard_console_control_total', { verb: 'stop', outcome: 'accepted' }),
      sentBefore,
      'nothing sent to the launcher',
    );
    assert.equal(processState(2), 'READY');

    // The same request with the proofs acts: the refusals above were the proofs missing.
    const allowed = await post({ ...json, [CSRF_HEADER]: csrf });
    assert.equal(allowed.status, 200);
    assert.equal((await answer(allowed)).accepted, true);
    await until('greeter#2 stopped', () => eventsOf(live.events, Kind.STOPPED, 2, since).length);
    assert.equal(eventsOf(live.events, Kind.STOPPING, 2, since).length, 1, 'stopped once');
    const start = await post(
      { ...json, [CSRF_HEADER]: csrf },
      JSON.stringify({ host: HOST, verb: 'start', component: 'greeter', instance: 2 }),
    );
    assert.equal(start.status, 200);
    await until('greeter#2 ready again', () => eventsOf(live.events, Kind.READY, 2, since).length);
  });

  test('without tokens, or without control, the buttons are absent and a POST gets 403', async () => {
    for (const options of [{}, { tokens }]) {
      const readOnly = await startConsole({
        bus,
        listen: '127.0.0.1:0',
        logger: logs.logger,
        ...options,
      });
      try {
        const guest = await browser.newPage();
        try {
          await guest.goto(`${readOnly.url}?token=${TOKEN}`);
          await guest.goto(`${readOnly.url}#/launcher/${HOST}`);
          await guest.locator(`tr[data-process="${HOST}/greeter#1"]`).waitFor();
          await guest.locator('#read-only').waitFor();
          assert.equal(await guest.locator('button').count(), 0, 'no control verbs');
        } finally {
          await guest.close();
        }
        const res = await fetch(new URL('/api/control', readOnly.url), {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${TOKEN}`,
            [CSRF_HEADER]: 'forged',
          },
          body: JSON.stringify({ host: HOST, verb: 'stop', component: 'greeter' }),
        });
        assert.equal(res.status, 403);
        assert.match((await answer(res)).error ?? '', /read-only/);
      } finally {
        await readOnly.close();
      }
    }
  });
});
