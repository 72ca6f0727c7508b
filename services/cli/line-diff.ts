/**
 * A unified line diff (`--- a`, `+++ b`, `@@ -l,n +l,n @@` hunks with 3 lines of
 * context), as `diff -u` prints it: the longest common subsequence of the lines
 * between the common head and tail. Mesh configurations are small; past a bound the
 * middle is shown as replaced whole rather than compared in quadratic time.
 */

type Line = { readonly op: ' ' | '-' | '+'; readonly text: string };

const CONTEXT = 3;
/** Cells of the LCS table beyond which the middle is shown as replaced whole. */
const MAX_CELLS = 4_000_000;

/** The diff of `a` to `b`; empty when they are equal. */
export function lineDiff(a: string, b: string, labelA: string, labelB: string): string {
  const lines = editScript(linesOf(a), linesOf(b));
  if (lines.every((l) => l.op === ' ')) return '';
  return [`--- ${labelA}`, `+++ ${labelB}`, ...hunks(lines)].join('\n');
}

/** A final newline ends the last line; it does not start another. */
const linesOf = (text: string) => (text === '' ? [] : text.replace(/\n$/, '').split('\n'));

function editScript(a: readonly string[], b: readonly string[]): Line[] {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (
    tail < a.length - head &&
    tail < b.length - head &&
    a[a.length - 1 - tail] === b[b.length - 1 - tail]
  ) {
    tail++;
  }
  const same = (text: string): Line => ({ op: ' ', text });
  const x = a.slice(head, a.length - tail);
  const y = b.slice(head, b.length - tail);
  return [...a.slice(0, head).map(same), ...middle(x, y), ...a.slice(a.length - tail).map(same)];
}

function middle(x: readonly string[], y: readonly string[]): Line[] {
  const removed = (text: string): Line => ({ op: '-', text });
  const added = (text: string): Line => ({ op: '+', text });
  if ((x.length + 1) * (y.length + 1) > MAX_CELLS) return [...x.map(removed), ...y.map(added)];
  // lcs[i][j]: the longest common subsequence of x[i..] and y[j..].
  const width = y.length + 1;
  const lcs = new Uint32Array((x.length + 1) * width);
  for (let i = x.length - 1; i >= 0; i--) {
    for (let j = y.length - 1; j >= 0; j--) {
      lcs[i * width + j] =
        x[i] === y[j]
          ? lcs[(i + 1) * width + j + 1]! + 1
          : Math.max(lcs[(i + 1) * width + j]!, lcs[i * width + j + 1]!);
    }
  }
  const out: Line[] = [];
  let [i, j] = [0, 0];
  while (i < x.length || j < y.length) {
    if (i < x.length && j < y.length && x[i] === y[j]) {
      out.push({ op: ' ', text: x[i++]! });
      j++;
    } else if (
      i < x.length &&
      (j === y.length || lcs[(i + 1) * width + j]! >= lcs[i * width + j + 1]!)
    ) {
      out.push(removed(x[i++]!));
    } else {
      out.push(added(y[j++]!));
    }
  }
  return out;
}

/** Changed lines with their context, grouped into hunks with their line numbers. */
function hunks(lines: readonly Line[]): string[] {
  const changed = lines.flatMap((l, index) => (l.op === ' ' ? [] : [index]));
  const out: string[] = [];
  let k = 0;
  while (k < changed.length) {
    const start = Math.max(0, changed[k]! - CONTEXT);
    let end = changed[k]!;
    while (k < changed.length && changed[k]! <= end + 2 * CONTEXT) end = changed[k++]!;
    end = Math.min(lines.length - 1, end + CONTEXT);
    const before = lines.slice(0, start);
    const body = lines.slice(start, end + 1);
    const lineA = before.filter((l) => l.op !== '+').length + 1;
    const lineB = before.filter((l) => l.op !== '-').length + 1;
    const countA = body.filter((l) => l.op !== '+').length;
    const countB = body.filter((l) => l.op !== '-').length;
    out.push(`@@ -${lineA},${countA} +${lineB},${countB} @@`);
    for (const l of body) out.push(`${l.op}${l.text}`);
  }
  return out;
}
