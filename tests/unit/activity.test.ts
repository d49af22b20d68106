import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { addActiveDay, gapBucket, windowIncrements } from '../../src/state/activity.js';

// Independent reference: 1970-01-05 (day 4) was a Monday; months from the JS Date of the day.
const mondayOf = (d: number): number => d - ((d - 4) % 7 + 7) % 7;
const monthOf = (d: number): number => {
  const x = new Date(d * 86_400_000);
  return x.getUTCFullYear() * 12 + x.getUTCMonth();
};

/** Brute force: for every window that could contain a day of `days`, is the user in it? */
function bruteForce(days: number[]): Map<string, number> {
  const out = new Map<string, number>();
  const set = new Set(days);
  const lo = Math.min(...days);
  const hi = Math.max(...days);
  for (const [name, w] of [['dau', 1], ['wau', 7], ['mau', 30]] as const) {
    for (let e = lo; e <= hi + w; e++) {
      let inside = false;
      for (let d = e - w + 1; d <= e; d++) if (set.has(d)) inside = true;
      if (inside) out.set(`${name}:${e}`, 1);
    }
  }
  for (const d of set) {
    out.set(`week:${mondayOf(d)}`, 1);
    out.set(`month:${monthOf(d)}`, 1);
  }
  return out;
}

describe('windowIncrements', () => {
  it('a daily user adds exactly one to each rolling window per day', () => {
    let days: number[] = [];
    for (let d = 20_000; d < 20_040; d++) {
      const incs = windowIncrements(days, d);
      const rolling = incs.filter((i) => i.window !== 'week' && i.window !== 'month');
      if (d >= 20_030) expect(rolling).toEqual([
        { window: 'dau', period: d },
        { window: 'wau', period: d + 6 },
        { window: 'mau', period: d + 29 },
      ]);
      days = addActiveDay(days, d);
    }
  });

  it('a first visit enters 1 + 7 + 30 rolling windows, its ISO week and its month', () => {
    const incs = windowIncrements([], 20_405); // 2025-11-13, a Thursday
    expect(incs.filter((i) => i.window === 'wau').map((i) => i.period)).toEqual([20_405, 20_406, 20_407, 20_408, 20_409, 20_410, 20_411]);
    expect(incs.filter((i) => i.window === 'mau')).toHaveLength(30);
    expect(incs.find((i) => i.window === 'week')?.period).toBe(20_402); // Monday 2025-11-10
    expect(incs.find((i) => i.window === 'month')?.period).toBe((2025 - 1970) * 12 + 10);
  });

  it('summed over any arrival order, equals the brute-force window membership', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 20_000, max: 20_055 }), { minLength: 1, maxLength: 25 }), (days) => {
        const counts = new Map<string, number>();
        let known: number[] = [];
        for (const d of days) {
          for (const inc of windowIncrements(known, d)) {
            const base = inc.window === 'month' ? inc.period + 1970 * 12 : inc.period;
            const key = `${inc.window}:${base}`;
            counts.set(key, (counts.get(key) ?? 0) + 1);
          }
          known = addActiveDay(known, d);
        }
        expect(counts).toEqual(bruteForce(days));
      }),
      { numRuns: 500 },
    );
  });
});

describe('addActiveDay', () => {
  it('keeps days ascending and at most 64 days back from the newest', () => {
    let days: number[] = [];
    for (const d of [100, 50, 180, 120, 179]) days = addActiveDay(days, d);
    expect(days).toEqual([120, 179, 180]);
  });
});

describe('gapBucket', () => {
  it.each([
    [1, '1'], [2, '2'], [3, '3'], [4, '4-7'], [7, '4-7'], [8, '8-14'], [14, '8-14'], [15, '15-30'], [30, '15-30'], [31, '31+'], [400, '31+'],
  ])('%i days -> %s', (days, bucket) => {
    expect(gapBucket(days)).toBe(bucket);
  });
});
