import { describe, expect, it } from 'vitest';
import { nextTransitionAt, stageAt } from '../../src/state/lifecycle.js';

const DAY = 86_400_000;
const spec = { newForMs: 7 * DAY, dormantAfterMs: 14 * DAY, churnedAfterMs: 30 * DAY, reactivatedForMs: 7 * DAY };
const T0 = Date.UTC(2026, 0, 1);

describe('stageAt', () => {
  it('walks new -> active -> dormant -> churned for a user seen on days 0 and 5', () => {
    const f = { firstSeen: T0, lastSeen: T0 + 5 * DAY };
    expect(stageAt(f, T0 + 6 * DAY, spec)).toEqual({ stage: 'new', since: T0 });
    expect(stageAt(f, T0 + 7 * DAY, spec)).toEqual({ stage: 'active', since: T0 + 7 * DAY });
    expect(stageAt(f, T0 + 19 * DAY - 1, spec).stage).toBe('active');
    expect(stageAt(f, T0 + 19 * DAY, spec)).toEqual({ stage: 'dormant', since: T0 + 19 * DAY });
    expect(stageAt(f, T0 + 35 * DAY, spec)).toEqual({ stage: 'churned', since: T0 + 35 * DAY });
  });

  it('is reactivated for a week after coming back, then active', () => {
    const f = { firstSeen: T0, lastSeen: T0 + 40 * DAY, reactivatedAt: T0 + 40 * DAY };
    expect(stageAt(f, T0 + 40 * DAY, spec)).toEqual({ stage: 'reactivated', since: T0 + 40 * DAY });
    expect(stageAt(f, T0 + 47 * DAY, spec)).toEqual({ stage: 'active', since: T0 + 47 * DAY });
  });
});

describe('nextTransitionAt', () => {
  it('is the next threshold after t, and null once churned', () => {
    const f = { firstSeen: T0, lastSeen: T0 + 5 * DAY };
    expect(nextTransitionAt(f, T0 + 5 * DAY, spec)).toBe(T0 + 7 * DAY);
    expect(nextTransitionAt(f, T0 + 7 * DAY, spec)).toBe(T0 + 19 * DAY);
    expect(nextTransitionAt(f, T0 + 19 * DAY, spec)).toBe(T0 + 35 * DAY);
    expect(nextTransitionAt(f, T0 + 35 * DAY, spec)).toBeNull();
  });
});
