import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NudgeError } from '../../src/errors.js';
import { describeFailure, isolatePoison } from '../../src/pipeline/isolate-poison.js';

/** A pure, in-order step like applyEvents: throws at the first item `bad` says no to. */
function stepper(bad: (item: string, seen: readonly string[]) => boolean) {
  let calls = 0;
  let applied = 0;
  const run = (subset: readonly string[]): string[] => {
    calls++;
    const seen: string[] = [];
    for (const item of subset) {
      applied++;
      if (bad(item, seen)) throw new TypeError(`cannot handle ${item}`);
      seen.push(item);
    }
    return seen;
  };
  return { run, calls: () => calls, applied: () => applied };
}

describe('isolatePoison', () => {
  it('calls the step once and reports nothing on a clean batch', () => {
    const s = stepper(() => false);
    expect(isolatePoison(['a', 'b', 'c'], s.run)).toEqual({ result: ['a', 'b', 'c'], poisoned: [] });
    expect(s.calls()).toBe(1);
  });

  it('leaves out exactly the items the step throws on and keeps the rest in order', () => {
    const items = Array.from({ length: 50 }, (_, i) => `e${i}`);
    const s = stepper((item) => item === 'e7' || item === 'e8' || item === 'e49');
    const { result, poisoned } = isolatePoison(items, s.run);
    expect(poisoned.map((p) => p.index)).toEqual([7, 8, 49]);
    expect(poisoned.every((p) => p.error instanceof TypeError)).toBe(true);
    expect(result).toEqual(items.filter((i) => !['e7', 'e8', 'e49'].includes(i)));
  });

  it('judges an item in its place in the batch, not alone', () => {
    // "b" fails only on top of "a" (say, a user state an earlier event of the batch built),
    // and "c" fails only when nothing came before it: neither verdict can be made alone.
    const s = stepper((item, seen) => (item === 'b' && seen.includes('a')) || (item === 'c' && seen.length === 0));
    const { result, poisoned } = isolatePoison(['a', 'x', 'b', 'c'], s.run);
    expect(poisoned.map((p) => p.index)).toEqual([2]);
    expect(result).toEqual(['a', 'x', 'c']);
  });

  it('stays linear when every item throws, and gives up only when the empty batch throws too', () => {
    const items = Array.from({ length: 1_000 }, (_, i) => `e${i}`);
    const allBad = stepper(() => true);
    const { result, poisoned } = isolatePoison(items, allBad.run);
    expect(result).toEqual([]);
    expect(poisoned).toHaveLength(1_000);
    expect(allBad.applied()).toBeLessThan(5 * items.length);

    const broken = () => {
      throw new Error('spec is broken');
    };
    expect(() => isolatePoison(['a', 'b'], broken)).toThrow('spec is broken');
  });

  it('finds the same items as trying every item in place, for any batch', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 60 }), fc.integer({ min: 0, max: 9 }), (values, poisonValue) => {
        const items = values.map((v, i) => `${v}:${i}`);
        // Context-dependent: a value fails when it follows (anywhere before it) an item of the poison value + 1.
        const bad = (item: string, seen: readonly string[]) =>
          item.startsWith(`${poisonValue}:`) && seen.some((x) => x.startsWith(`${(poisonValue + 1) % 10}:`));
        const { result, poisoned } = isolatePoison(items, stepper(bad).run);
        // The reference: walk the batch in order, keeping what passes on top of what was kept.
        const kept: string[] = [];
        const expected: number[] = [];
        items.forEach((item, i) => (bad(item, kept) ? expected.push(i) : kept.push(item)));
        expect(poisoned.map((p) => p.index)).toEqual(expected);
        expect(result).toEqual(kept);
      }),
    );
  });
});

describe('describeFailure', () => {
  it('keeps the class and the throw site of a foreign error, never its message', () => {
    const err = new RangeError('Invalid time zone specified: Secret/Zone user@example.com');
    err.stack = `RangeError: Invalid time zone specified: Secret/Zone user@example.com\n    at dayNumber (file:///app/src/time/calendar.ts:73:20)\n    at applyOne (file:///app/src/state/decide.ts:180:21)`;
    const text = describeFailure(err);
    expect(text).toBe('RangeError at calendar.ts:73:20');
    expect(text).not.toContain('Secret');
  });

  it('keeps the code and message of a Nudge error, whose messages carry no personal data', () => {
    expect(describeFailure(new NudgeError('NUDGE_EVENT_POISON', 'a counter is misconfigured'))).toBe('NUDGE_EVENT_POISON: a counter is misconfigured');
  });

  it('names a thrown non-error by its type only', () => {
    expect(describeFailure('user 42 broke it')).toBe('a thrown string');
    expect(describeFailure(null)).toBe('a thrown null');
  });
});
