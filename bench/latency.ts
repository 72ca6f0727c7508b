/** Sequential latency sampling and the table every latency benchmark prints. */

export interface Row {
  readonly name: string;
  /** Milliseconds, sorted ascending. */
  readonly samples: number[];
}

export interface MeasureOptions {
  readonly count: number;
  /** The case stops here even if `count` was not reached. */
  readonly budgetMs: number;
  readonly warmup?: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** Times `op` one call at a time; warm-up calls get negative indexes. */
export async function measure(
  name: string,
  op: (i: number) => Promise<unknown>,
  { count, budgetMs, warmup = 50 }: MeasureOptions,
): Promise<Row> {
  for (let i = 0; i < warmup; i++) await op(-1 - i);
  const out: number[] = [];
  const deadline = performance.now() + budgetMs;
  for (let i = 0; i < count && performance.now() < deadline; i++) {
    const start = performance.now();
    await op(i);
    out.push(performance.now() - start);
  }
  return { name, samples: out.sort((a, b) => a - b) };
}

/** A markdown table; ratios are against the first row. */
export function printTable(title: string, rows: readonly Row[]): void {
  const base = rows[0];
  if (!base) return;
  console.log(`\n${title}`);
  console.log('| case | n | p50 ms | p99 ms | p50 ratio | p99 ratio |');
  console.log('|---|---|---|---|---|---|');
  for (const row of rows) {
    const p50 = percentile(row.samples, 50);
    const p99 = percentile(row.samples, 99);
    const r50 = p50 / percentile(base.samples, 50);
    const r99 = p99 / percentile(base.samples, 99);
    console.log(
      `| ${row.name} | ${row.samples.length} | ${p50.toFixed(3)} | ${p99.toFixed(3)} | ${r50.toFixed(2)}× | ${r99.toFixed(2)}× |`,
    );
  }
}
