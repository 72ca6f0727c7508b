/**
 * The Grafana dashboards and the Prometheus example: valid JSON and YAML, and every
 * metric a dashboard queries is one a component exports, as read from the /metrics of
 * an admin endpoint serving every component's metrics.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import '../../bus/metrics.js';
import '../../services/cache/metrics.js';
import '../../services/discovery/metrics.js';
import '../../services/launcher/metrics.js';
import { ADMIN_BASE_OFFSET, MeshAdminOffsets } from '../../services/cli/mesh.js';
import { type AdminServer, startAdmin } from '../../services/common/admin.js';
import { registerGauges } from '../../services/gateway/metrics.js';

// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax
const DATASOURCE = '${datasource}';
const DIR = new URL('../../deploy/grafana/', import.meta.url);
const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));

interface Target {
  expr: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: Target[];
  datasource?: { type: string; uid: string };
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; query?: string | { query: string } }> };
}

const dashboards = files.map((file) => ({
  file,
  dashboard: JSON.parse(readFileSync(new URL(file, DIR), 'utf8')) as Dashboard,
}));

/** Every query of a dashboard: its panels' and its template variables'. */
function queries(d: Dashboard): string[] {
  const fromPanels = d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  const fromVariables = d.templating.list.flatMap((v) =>
    typeof v.query === 'object' ? [v.query.query] : [],
  );
  return [...fromPanels, ...fromVariables];
}

/** Metric names in PromQL: Halyard's and the process/Node.js defaults prom-client adds. */
const metricNames = (query: string) =>
  query.match(/\b(?:halyard|process|nodejs)_[a-z0-9_]+\b/g) ?? [];

describe('Grafana dashboards', () => {
  let admin: AdminServer;
  const exported = new Set<string>();

  before(async () => {
    // The gateway registers its gauges when it starts; this is what it does then.
    registerGauges({
      activeCalls: () => 0,
      upstreamSessions: () => 0,
      ejectedInstances: () => 0,
      affinityPreferences: () => 0,
    });
    admin = await startAdmin({ port: 0, notReady: () => undefined });
    const body = await (await fetch(`http://127.0.0.1:${admin.port}/metrics`)).text();
    for (const [, name, type] of body.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      exported.add(name!);
      if (type === 'histogram')
        for (const s of ['_bucket', '_sum', '_count']) exported.add(`${name}${s}`);
    }
  });
  after(() => admin?.close());

  test('there is one per area: gateway, discovery, launcher, bus (and cache)', () => {
    for (const area of ['gateway', 'discovery', 'launcher', 'bus', 'cache']) {
      assert.ok(files.includes(`halyard-${area}.json`), area);
    }
    const uids = dashboards.map(({ dashboard }) => dashboard.uid);
    assert.equal(new Set(uids).size, uids.length, 'unique uids');
  });

  test('every query names only metrics the components export', () => {
    assert.ok(exported.has('halyard_gateway_requests_total'), 'the registry was read');
    for (const { file, dashboard } of dashboards) {
      const all = queries(dashboard);
      assert.ok(all.length > 0, file);
      for (const query of all) {
        const names = metricNames(query);
        assert.ok(names.length > 0, `${file}: a query without a known metric prefix: ${query}`);
        for (const name of names) assert.ok(exported.has(name), `${file}: ${name} is not exported`);
      }
    }
  });

  test('every panel with queries reads the dashboard datasource variable, and ids are unique', () => {
    for (const { file, dashboard } of dashboards) {
      const ids = dashboard.panels.map((p) => p.id);
      assert.equal(new Set(ids).size, ids.length, `${file}: unique panel ids`);
      assert.ok(dashboard.templating.list.some((v) => v.name === 'datasource'));
      for (const panel of dashboard.panels.filter((p) => p.targets)) {
        assert.deepEqual(
          panel.datasource,
          { type: 'prometheus', uid: DATASOURCE },
          `${file}: ${panel.title}`,
        );
      }
    }
  });

  test('the Prometheus example scrapes every admin port of the local mesh', () => {
    const config = parse(
      readFileSync(new URL('../../deploy/prometheus/prometheus.yml', import.meta.url), 'utf8'),
    ) as { scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }> };
    const scraped = config.scrape_configs
      .flatMap((job) => job.static_configs.flatMap((s) => s.targets))
      .sort();
    const base = 4222 + ADMIN_BASE_OFFSET;
    const o = MeshAdminOffsets;
    const expected = [
      base + o.launcherAdmin,
      base + o.discovery + 1,
      base + o.discovery + 2,
      base + o.gateway + 1,
      base + o.gateway + 2,
      base + o.cache + 1,
    ].map((port) => `127.0.0.1:${port}`);
    assert.deepEqual(scraped, expected.sort());
  });
});
