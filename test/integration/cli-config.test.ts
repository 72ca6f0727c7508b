/**
 * `halyard config …` run as processes against a locked 3-node cluster: invalid files
 * refused before anything is published, concurrent applies with exactly one winner that
 * the losers are told of, show/diff/history/rollback, and roles that may not publish.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Bus } from '../../bus/index.js';
import { connectAs } from '../support/bus-cluster.js';
import { runCli } from '../support/cli.js';
import { captureLogs } from '../support/logs.js';
import { NatsCluster } from '../support/nats-cluster.js';

const PERMISSION = /permission/i;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const mesh = (greeterVersion: string, instances = 2) =>
  [
    '# the demo mesh',
    'rollout: { healthySeconds: 2 }',
    'components:',
    '  greeter:',
    '    command: node',
    '    args: [services/demo/main.ts]',
    `    version: "${greeterVersion}"`,
    `    instances: ${instances}`,
    '    env:',
    '      HALYARD_REGISTRY_TOKEN_FILE: /etc/halyard/greeter.token',
    '',
  ].join('\n');

describe('halyard config on a locked 3-node cluster', () => {
  let cluster: NatsCluster;
  let dir: string;
  let operator: Bus;
  const logs = captureLogs('warn');
  const open: Bus[] = [];

  async function as(role: string): Promise<Bus> {
    const bus = await connectAs(cluster, role, logs.logger);
    open.push(bus);
    return bus;
  }

  /** Runs `halyard config …` as `role`, with the role's files as a component is given them. */
  const cli = (args: string[], role = 'operator'): Promise<Run> =>
    runCli(cluster, ['config', ...args], { role });

  function file(name: string, text: string): string {
    const target = path.join(dir, name);
    fs.writeFileSync(target, text);
    return target;
  }

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'halyard-cli-config-'));
    cluster = await NatsCluster.start({ secure: true, launcherHosts: ['host-a'] });
    await (await as('admin')).provision();
    operator = await as('operator');
  });
  after(async () => {
    for (const bus of open) await bus.close().catch(() => {});
    await cluster?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('an invalid file is refused with every problem, its field and line; nothing is published', async () => {
    const bad = file(
      'bad.yaml',
      [
        'hostId: host-a', // 1
        'components:', // 2
        '  greeter:', // 3
        '    command: node', // 4
        '    instances: -1', // 5
        '    env:', // 6
        '      HALYARD_GATEWAY_JWT_SECRET: hunter2', // 7
        '    dependsOn: [discovery]', // 8
        '', // 9
      ].join('\n'),
    );
    const run = await cli(['apply', bad]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /refused, nothing published \(4 problems\)/);
    assert.match(run.stderr, new RegExp(`hostId \\(${bad}:1\\): a setting of one host`));
    assert.match(
      run.stderr,
      new RegExp(`components\\.greeter\\.instances \\(${bad}:5\\): Too small`),
    );
    assert.match(
      run.stderr,
      new RegExp(
        `components\\.greeter\\.env\\.HALYARD_GATEWAY_JWT_SECRET \\(${bad}:7\\): looks like a secret`,
      ),
    );
    assert.match(
      run.stderr,
      new RegExp(`components\\.greeter\\.dependsOn\\.0 \\(${bad}:8\\): no component "discovery"`),
    );
    assert.deepEqual(await operator.meshConfig().history(), []);
  });

  test('apply publishes version 1; the same file again publishes nothing and says so', async () => {
    const v1 = file('v1.yaml', mesh('1'));
    const first = await cli(['apply', v1]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(
      first.stdout,
      /published version 1 \(based on 0\): first version: 1 component \(greeter\)/,
    );
    const again = await cli(['apply', v1]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /unchanged: version 1 already holds .*; nothing published/);
    const latest = await operator.meshConfig().latest();
    assert.equal(latest?.version, 1);
    assert.equal(latest?.content, mesh('1'));
    assert.match(latest?.author ?? '', /@.* \(operator\)$/);
  });

  test('two operators applying on the same version: one wins, the other is told by whom, each round', async () => {
    for (let round = 0; round < 3; round++) {
      const basedOn = (await operator.meshConfig().latest())!.version;
      const runs = await Promise.all(
        (['operator', 'admin'] as const).map((role) =>
          cli(
            [
              'apply',
              file(`${role}-${round}.yaml`, mesh(`${round}-${role}`)),
              '--based-on',
              String(basedOn),
            ],
            role,
          ),
        ),
      );
      const winners = runs.filter((r) => r.code === 0);
      const losers = runs.filter((r) => r.code !== 0);
      assert.equal(winners.length, 1, runs.map((r) => r.stdout + r.stderr).join('\n'));
      const won = (await operator.meshConfig().latest())!;
      assert.equal(won.version, basedOn + 1);
      assert.match(
        winners[0]!.stdout,
        new RegExp(`published version ${won.version} \\(based on ${basedOn}\\)`),
      );
      const author = won.author.replace(/[()]/g, '\\$&');
      assert.match(
        losers[0]!.stderr,
        new RegExp(
          `not published: the mesh configuration moved on from version ${basedOn}; version ${won.version} by ${author} at `,
        ),
      );
      assert.match(losers[0]!.stderr, new RegExp(`halyard config diff ${basedOn} ${won.version}`));
    }
    const history = await operator.meshConfig().history();
    assert.deepEqual(
      history.map((v) => v.version),
      [1, 2, 3, 4],
    );
  });

  test('show, diff, history and rollback: a round trip', async () => {
    const store = operator.meshConfig();
    const before = (await store.latest())!;
    const bigger = file('bigger.yaml', mesh('7', 3));
    const applied = await cli(['apply', bigger]);
    assert.equal(applied.code, 0, applied.stderr);
    const next = before.version + 1;
    assert.match(
      applied.stdout,
      new RegExp(
        `published version ${next} \\(based on ${before.version}\\): greeter: version ${before.content.match(/version: "(.*)"/)![1]} → 7, instances 2 → 3`,
      ),
    );

    const show = await cli(['show']);
    assert.equal(show.code, 0, show.stderr);
    assert.match(
      show.stderr,
      new RegExp(`^# version ${next} \\(based on ${before.version}\\) by `),
    );
    assert.equal(show.stdout, mesh('7', 3), 'the content exactly as applied');
    const showJson = JSON.parse((await cli(['show', '--version', '1', '--json'])).stdout);
    assert.equal(showJson.version, 1);
    assert.equal(showJson.content, mesh('1'));

    const diff = await cli(['diff', '1', String(next)]);
    assert.equal(diff.code, 0, diff.stderr);
    assert.equal(
      diff.stdout,
      [
        '--- version 1',
        `+++ version ${next}`,
        '@@ -4,7 +4,7 @@',
        '   greeter:',
        '     command: node',
        '     args: [services/demo/main.ts]',
        '-    version: "1"',
        '-    instances: 2',
        '+    version: "7"',
        '+    instances: 3',
        '     env:',
        '       HALYARD_REGISTRY_TOKEN_FILE: /etc/halyard/greeter.token',
        '',
      ].join('\n'),
    );

    const rollback = await cli(['rollback', '1']);
    assert.equal(rollback.code, 0, rollback.stderr);
    assert.match(
      rollback.stdout,
      new RegExp(
        `published version ${next + 1} \\(based on ${next}\\): rollback to 1: greeter: version 7 → 1, instances 3 → 2`,
      ),
    );
    assert.equal((await store.latest())?.content, mesh('1'));
    const again = await cli(['rollback', '1']);
    assert.match(
      again.stdout,
      /unchanged: the latest version .* already holds version 1's content/,
    );

    const history = JSON.parse((await cli(['history', '--json'])).stdout) as Array<{
      version: number;
      basedOn: number;
      author: string;
      summary: string;
    }>;
    assert.deepEqual(
      history.map((v) => [v.version, v.basedOn]),
      Array.from({ length: next + 1 }, (_, i) => [i + 1, i]),
    );
    assert.match(history.at(-1)!.summary, /^rollback to 1: /);
    const text = await cli(['history']);
    assert.match(text.stdout, /VERSION +PUBLISHED +BY +SUMMARY/);
    assert.match(text.stdout, new RegExp(`\\n +${next + 1} +\\S+ +.*rollback to 1`));

    const missing = await cli(['show', '--version', '99']);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      new RegExp(`no version 99 of the mesh configuration \\(latest: ${next + 1}\\)`),
    );
  });

  test('launchers, gateways, discovery and the cache read versions; none of them, nor an extender, publishes one', async () => {
    const latest = (await operator.meshConfig().latest())!;
    for (const role of ['launcher-host-a', 'gateway', 'discovery', 'cache']) {
      const store = (await as(role)).meshConfig();
      assert.deepEqual(await store.latest(), latest, role);
      await assert.rejects(
        store.publish({ basedOn: latest.version, content: mesh('x'), author: role, summary: '' }),
        PERMISSION,
        role,
      );
    }
    await assert.rejects((await as('extender')).meshConfig().latest(), PERMISSION);
    for (const role of ['extender', 'gateway']) {
      const run = await cli(['apply', file(`${role}.yaml`, mesh(role))], role);
      assert.equal(run.code, 1, `${role}: ${run.stdout}`);
      assert.match(run.stderr, PERMISSION);
    }
    assert.equal((await operator.meshConfig().latest())?.version, latest.version);
  });
});
