import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WakeLoop } from '../../src/touches/wake-loop.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('WakeLoop (the relay loop)', () => {
  it('runs at once, then on wake() without waiting for the interval, else every interval', async () => {
    const times: number[] = [];
    const loop = new WakeLoop(async () => {
      times.push(Date.now());
      return false;
    }, { intervalMs: 1_000, initialBackoffMs: 100, maxBackoffMs: 1_000, onError: () => {} });
    const t0 = Date.now();
    loop.start();
    await vi.advanceTimersByTimeAsync(10);
    expect(times).toEqual([t0]);
    loop.wake();
    await vi.advanceTimersByTimeAsync(1);
    expect(times).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(times).toHaveLength(3);
    await loop.stop();
  });

  it('runs again right after a pass during which wake() was called (no lost notification)', async () => {
    let passes = 0;
    let release: () => void = () => {};
    const loop = new WakeLoop(async () => {
      passes++;
      if (passes === 1) await new Promise<void>((r) => (release = r));
      return false;
    }, { intervalMs: 60_000, initialBackoffMs: 100, maxBackoffMs: 1_000, onError: () => {} });
    loop.start();
    await vi.advanceTimersByTimeAsync(1);
    loop.wake(); // arrives while pass 1 reads
    release();
    await vi.advanceTimersByTimeAsync(1);
    expect(passes).toBe(2);
    await loop.stop();
  });

  it('keeps going while there is more work, and backs off exponentially on failures without wake() cutting it short', async () => {
    const delays: number[] = [];
    let fail = 4;
    let passes = 0;
    const loop = new WakeLoop(async () => {
      passes++;
      if (fail-- > 0) throw new Error('redis down');
      return passes < 8;
    }, { intervalMs: 60_000, initialBackoffMs: 100, maxBackoffMs: 400, onError: (_e, _n, d) => delays.push(d) });
    loop.start();
    await vi.advanceTimersByTimeAsync(1);
    for (let i = 0; i < 5; i++) loop.wake();
    expect(passes).toBe(1);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(delays).toHaveLength(4);
    // Jitter keeps each in [envelope/2, envelope]; envelopes 100, 200, 400, 400.
    [100, 200, 400, 400].forEach((env, i) => {
      expect(delays[i]).toBeGreaterThanOrEqual(env / 2);
      expect(delays[i]).toBeLessThanOrEqual(env);
    });
    expect(passes).toBe(8); // then idle until the interval
    await loop.stop();
  });
});
