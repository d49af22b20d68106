import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// Issue 6: the README's Guarantees table maps each promise to the test that proves it. A row
// without a test, or naming a test that was renamed or removed, is a promise nobody checks.
const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const section = readme.split('\n## Guarantees\n')[1]?.split('\n## ')[0] ?? '';
const rows = section.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| promise') && !l.startsWith('|---'));

describe('README Guarantees', () => {
  it('has a table', () => {
    expect(rows.length).toBeGreaterThan(10);
  });

  it.each(rows.map((r, i) => [i + 1, r] as const))('row %i names at least one test, and each exists', (_, row) => {
    const cells = row.split(' | ');
    const tests = [...(cells[cells.length - 1] ?? '').matchAll(/`((?:chaos|integration|unit)\/[a-z0-9-]+)`/g)].map((m) => m[1]);
    expect(tests.length, row.slice(0, 80)).toBeGreaterThan(0);
    for (const t of tests) expect(existsSync(new URL(`../${t}.test.ts`, import.meta.url)), `tests/${t}.test.ts`).toBe(true);
  });
});
