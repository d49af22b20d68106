import { describe, expect, it } from 'vitest';
import { liftOf } from '../../src/state/lift.js';
import { statsFromCounters } from '../../src/state/journey-stats.js';

describe('liftOf', () => {
  it('gives the difference of rates with a Wald interval and the risk ratio with a Katz interval (hand-computed)', () => {
    // 12% of 1,000 treated users against 10% of 1,000 held out.
    const l = liftOf({ users: 1000, conversions: 120 }, { users: 1000, conversions: 100 })!;
    expect(l.absolute.value).toBeCloseTo(0.02, 6);
    expect(l.absolute.low).toBeCloseTo(-0.007412, 5);
    expect(l.absolute.high).toBeCloseTo(0.047412, 5);
    expect(l.relative!.value).toBeCloseTo(0.2, 6);
    expect(l.relative!.low).toBeCloseTo(-0.0659, 3);
    expect(l.relative!.high).toBeCloseTo(0.5416, 3);
    expect(l.significant).toBe(false);
    expect(liftOf({ users: 10_000, conversions: 1_200 }, { users: 10_000, conversions: 1_000 })!.significant).toBe(true);
  });

  it('has no lift before both groups have users, and no relative lift without conversions', () => {
    expect(liftOf({ users: 10, conversions: 1 }, { users: 0, conversions: 0 })).toBeNull();
    expect(liftOf({ users: 10, conversions: 1 }, { users: 10, conversions: 0 })!.relative).toBeNull();
  });
});

describe('statsFromCounters', () => {
  it('counts users by assigned group (intent to treat) and pools the variants against the holdout', () => {
    const s = statsFromCounters(
      'loan',
      new Map([
        ['entered:variant:A', 450],
        ['entered:variant:B', 450],
        ['entered:holdout:', 100],
        ['converted:variant:A', 45],
        ['converted:variant:B', 63],
        ['converted:holdout:', 8],
        ['outcome:send', 800],
        ['outcome:suppress', 100],
        ['outcome:holdout', 100],
        ['reason:cap_channel', 100],
        ['skipped:reentry_cooldown', 7],
      ]),
    );
    expect(s.variants).toEqual({ A: { users: 450, conversions: 45, conversionRate: 0.1 }, B: { users: 450, conversions: 63, conversionRate: 0.14 } });
    expect(s.holdout).toEqual({ users: 100, conversions: 8, conversionRate: 0.08 });
    expect(s.lift!.absolute.value).toBeCloseTo(108 / 900 - 0.08, 9);
    expect(s.decisions).toEqual({ send: 800, suppress: 100, holdout: 100 });
    expect(s.skipped).toEqual({ reentry_cooldown: 7 });
  });
});
