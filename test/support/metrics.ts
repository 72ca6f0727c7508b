import type { Counter } from 'prom-client';

/** Current value of a counter for the given labels (0 when never incremented). */
export async function counterValue(
  counter: Counter,
  labels: Record<string, string> = {},
): Promise<number> {
  const { values } = await counter.get();
  const match = values.find((v) =>
    Object.entries(labels).every(([name, value]) => v.labels[name] === value),
  );
  return match?.value ?? 0;
}

/** The sum of a counter over every label set. */
export async function counterSum(counter: Counter): Promise<number> {
  const { values } = await counter.get();
  return values.reduce((sum, v) => sum + v.value, 0);
}
