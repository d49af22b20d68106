import { describe, expect, it } from 'vitest';
import { BACKOFF_DEFAULTS, retryDelayMs, touchBackoffStrategy } from '../../src/touches/backoff.js';

const fixed = (v: number) => () => v;

describe('touch retry backoff', () => {
  it('doubles from initialMs and stops at maxMs (no jitter)', () => {
    const o = { initialMs: 1000, maxMs: 10_000, jitter: 0 };
    expect([1, 2, 3, 4, 5, 6, 60, 5000].map((n) => retryDelayMs(n, o))).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000, 10_000, 10_000]);
  });

  it('keeps a jittered delay inside [d·(1−jitter), d]', () => {
    const o = { initialMs: 1000, maxMs: 1e9, jitter: 0.5 };
    for (let n = 1; n <= 10; n++) {
      const d = 1000 * 2 ** (n - 1);
      expect(retryDelayMs(n, o, undefined, fixed(0))).toBe(d / 2);
      expect(retryDelayMs(n, o, undefined, fixed(0.999999))).toBeLessThanOrEqual(d);
      expect(retryDelayMs(n, o, undefined, fixed(0.999999))).toBeGreaterThan(d * 0.99);
    }
  });

  it('spreads a herd: full jitter over many draws covers the range evenly', () => {
    const o = { initialMs: 1000, maxMs: 1e9, jitter: 1 };
    const draws = Array.from({ length: 4000 }, () => retryDelayMs(3, o));
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...draws)).toBeLessThanOrEqual(4000);
    const quarters = [0, 0, 0, 0];
    for (const d of draws) quarters[Math.min(3, Math.floor(d / 1000))]!++;
    for (const q of quarters) expect(q).toBeGreaterThan(700); // ~1000 each; far from flaky
  });

  it('never retries sooner than Retry-After, capped at maxRetryAfterMs', () => {
    const o = { initialMs: 1000, maxMs: 60_000, jitter: 0, maxRetryAfterMs: 30_000 };
    expect(retryDelayMs(1, o, 5_000)).toBe(5_000);
    expect(retryDelayMs(5, o, 5_000)).toBe(16_000);
    expect(retryDelayMs(1, o, 3_600_000)).toBe(30_000);
    expect(retryDelayMs(1, o, 0)).toBe(1000);
  });

  it('has defaults that span days when attempts allow (Standard Webhooks schedule)', () => {
    const o = { ...BACKOFF_DEFAULTS, jitter: 0 };
    let total = 0;
    for (let n = 1; n <= 20; n++) total += retryDelayMs(n, o);
    expect(total).toBeGreaterThan(2 * 86_400_000);
  });

  it('as a BullMQ strategy, reads retryAfterMs from the error of the failed attempt', () => {
    const strategy = touchBackoffStrategy({ initialMs: 100, jitter: 0 });
    expect(strategy(1, 'nudge-touch', new Error('x'))).toBe(100);
    expect(strategy(2, 'nudge-touch', Object.assign(new Error('429'), { retryAfterMs: 7000 }))).toBe(7000);
    expect(strategy(3)).toBe(400);
  });
});
