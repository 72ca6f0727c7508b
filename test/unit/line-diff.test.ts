/** `halyard config diff`'s line diff: the hunks `diff -u` prints for the same two texts. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lineDiff } from '../../services/cli/line-diff.js';

const lines = (n: number) => Array.from({ length: n }, (_, i) => `l${i}`);

test('equal texts have no diff', () => {
  assert.equal(lineDiff('a\nb\n', 'a\nb\n', 'x', 'y'), '');
});

test('changes far apart are separate hunks with 3 lines of context, as diff -u prints them', () => {
  const a = `${lines(20).join('\n')}\n`;
  const b = `${lines(20)
    .map((l) => (l === 'l3' ? 'L3' : l))
    .filter((l) => l !== 'l15')
    .join('\n')}\nnew\n`;
  assert.equal(
    lineDiff(a, b, 'version 1', 'version 2'),
    [
      '--- version 1',
      '+++ version 2',
      '@@ -1,7 +1,7 @@',
      ' l0',
      ' l1',
      ' l2',
      '-l3',
      '+L3',
      ' l4',
      ' l5',
      ' l6',
      '@@ -13,8 +13,8 @@',
      ' l12',
      ' l13',
      ' l14',
      '-l15',
      ' l16',
      ' l17',
      ' l18',
      ' l19',
      '+new',
    ].join('\n'),
  );
});

test('changes close together share one hunk', () => {
  const a = lines(10).join('\n');
  const b = lines(10)
    .map((l) => (l === 'l2' || l === 'l7' ? `${l}!` : l))
    .join('\n');
  const diff = lineDiff(a, b, 'a', 'b').split('\n');
  assert.deepEqual(
    diff.filter((l) => l.startsWith('@@')),
    ['@@ -1,10 +1,10 @@'],
  );
  assert.deepEqual(
    diff.filter((l) => /^[-+]l/.test(l)),
    ['-l2', '+l2!', '-l7', '+l7!'],
  );
});
