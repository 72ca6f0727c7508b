/**
 * A component with `settings:` gets them as a private file through its config variable,
 * and a refresh that changes them restarts the instance onto the new file.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import type { Bus } from '../../bus/index.js';
import { settingsDir } from '../../services/launcher/component-settings.js';
import { startBusCluster } from '../support/bus-cluster.js';
import { controlAccess, startLauncher, writeConfig } from '../support/launcher.js';
import { captureLogs } from '../support/logs.js';
import type { NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/wait.js';

describe('launcher: component settings', () => {
  let cluster: NatsCluster;
  let bus: Bus;
  const busLogs = captureLogs('warn');

  before(async () => {
    ({ cluster, bus } = await startBusCluster('test-launcher-settings', busLogs.logger));
  });
  after(async () => {
    await bus?.close();
    await cluster?.close();
  });

  test('the instance reads its settings from the file its config variable names; new settings restart it', async (t) => {
    const host = 'host-settings';
    const work = await mkdtemp(path.join(tmpdir(), 'halyard-settings-'));
    t.after(() => rm(work, { recursive: true, force: true }));
    const seen = path.join(work, 'seen');
    const gateway = (maxConcurrentCalls: number) => ({
      command: 'bash',
      // Records the variable and the file's content, then runs until stopped.
      args: [
        '-c',
        'echo "$HALYARD_GATEWAY_CONFIG" > "$SEEN.tmp"; cat "$HALYARD_GATEWAY_CONFIG" >> "$SEEN.tmp"; mv "$SEEN.tmp" "$SEEN"; exec sleep 600',
      ],
      env: { SEEN: seen },
      settings: { kind: 'gateway', limits: { maxConcurrentCalls } },
    });
    const { launcher, configFile } = await startLauncher(bus, host, {
      components: { gateway: gateway(500) },
    });
    const read = () => {
      const [file, ...content] = readFileSync(seen, 'utf8').split('\n');
      return { file: file!, settings: parse(content.join('\n')) };
    };
    try {
      await until('the instance read its settings', () => existsSync(seen), 10_000);
      const first = read();
      assert.equal(path.dirname(first.file), settingsDir(host));
      assert.equal(statSync(first.file).mode & 0o777, 0o600);
      assert.deepEqual(first.settings, { limits: { maxConcurrentCalls: 500 } });

      await rm(seen);
      await writeConfig(
        { hostId: host, control: controlAccess(), components: { gateway: gateway(600) } },
        configFile,
      );
      await launcher.refresh();
      await until('the restarted instance read its settings', () => existsSync(seen), 10_000);
      const second = read();
      assert.notEqual(second.file, first.file);
      assert.deepEqual(second.settings, { limits: { maxConcurrentCalls: 600 } });
    } finally {
      await launcher.shutdown();
    }
  });
});
