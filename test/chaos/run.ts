/**
 * `npm run chaos` (root: hosts are network namespaces): a 3-host deployment
 * (test/support/multi-host.ts), load through both gateways, then each scenario in turn,
 * one table row each (definitions in scenarios.ts). Bounded: after CHAOS_TIMEOUT_S
 * (default 900) everything is torn down and the run fails. Exit code 1 when a goal is
 * missed.
 */
import { MultiHost } from '../support/multi-host.js';
import {
  killBucketLeaderScenario,
  killGatewayScenario,
  killHostScenario,
  killLauncherScenario,
  partitionScenario,
  type Row,
  restartNatsAllAtOnceScenario,
  restartNatsOneByOneScenario,
  rollingRestartScenario,
} from './scenarios.js';

const TIMEOUT_S = Number(process.env.CHAOS_TIMEOUT_S ?? 900);

const HEADER = [
  'scenario',
  'calls',
  'failed',
  'failed in flight on a killed process',
  'p99 ms during',
  'seconds to full recovery',
  'acknowledged writes lost',
  'sticky users moved without need',
];

function line(cells: readonly (string | number)[]): string {
  return `| ${cells.join(' | ')} |`;
}

function rowCells(row: Row): (string | number)[] {
  return [
    row.scenario,
    row.calls,
    row.failed,
    row.failedInFlight,
    row.p99Ms,
    row.recoverySeconds ?? 'not whole (missed)',
    row.writesLost,
    row.stickyMovedWithoutNeed,
  ];
}

/** A goal missed: a call failed that was not in flight, a write lost, a user moved, no recovery. */
export function missed(row: Row): boolean {
  return (
    row.failed > row.failedInFlight ||
    row.writesLost > 0 ||
    row.stickyMovedWithoutNeed > 0 ||
    row.recoverySeconds === undefined ||
    row.notes.some((n) => n.includes('missed'))
  );
}

const scenarios: [string, (d: MultiHost) => Promise<Row>][] = [
  ['host 3', (d) => killHostScenario(d, 3)],
  ['host 2', (d) => killHostScenario(d, 2)],
  ['partition', (d) => partitionScenario(d, 3, 30)],
  ['gateway', (d) => killGatewayScenario(d, 1)],
  ['launcher', (d) => killLauncherScenario(d, 2)],
  ['rolling restart', (d) => rollingRestartScenario(d)],
  ['registry leader', (d) => killBucketLeaderScenario(d, 'registry')],
  ['affinity leader', (d) => killBucketLeaderScenario(d, 'affinity')],
  ['nats one by one', (d) => restartNatsOneByOneScenario(d)],
  ['nats all at once', (d) => restartNatsAllAtOnceScenario(d)],
];

async function main(): Promise<number> {
  const only = process.argv.slice(2);
  const t0 = Date.now();
  process.stdout.write('bringing up 3 hosts (NATS, launchers, the mesh)…\n');
  const deployment = await MultiHost.start();
  const watchdog = setTimeout(() => {
    process.stderr.write(`chaos: over ${TIMEOUT_S} s, stopping\n`);
    void deployment.close().finally(() => process.exit(1));
  }, TIMEOUT_S * 1000);
  const rows: Row[] = [];
  try {
    process.stdout.write(`ready in ${Math.round((Date.now() - t0) / 1000)} s\n\n`);
    process.stdout.write(`${line(HEADER)}\n${line(HEADER.map(() => '---'))}\n`);
    for (const [name, run] of scenarios) {
      if (only.length > 0 && !only.includes(name)) continue;
      const row = await run(deployment);
      rows.push(row);
      process.stdout.write(`${line(rowCells(row))}\n`);
    }
    process.stdout.write('\n');
    for (const row of rows) {
      for (const note of row.notes) process.stdout.write(`- ${row.scenario}: ${note}\n`);
    }
    process.stdout.write(`\ntotal ${Math.round((Date.now() - t0) / 1000)} s\n`);
  } finally {
    clearTimeout(watchdog);
    await deployment.close();
  }
  return rows.some(missed) ? 1 : 0;
}

process.exitCode = await main();
