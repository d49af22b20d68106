import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assign, inGlobalHoldout, isValidTouchId, pickVariant, touchIdOf, unitHash } from '../../src/rules/assignment.js';
import { journey, match, policy } from '../support/rules-fixtures.js';

/** Deterministic assignment and touch ids: stable across processes, split as configured. */

const USERS = Array.from({ length: 6000 }, (_, i) => `user-${i}`);
const trigger = { type: 'event' as const, match: match('x') };
// Fixed seeds: the hash is deterministic, so a fixed seed makes every run check the same cases.
const PROPERTY = { seed: 20_261_102, numRuns: 25 };

describe('touch id', () => {
  const key = { journeyId: 'loan-interest', stepId: 'offer', userId: 'u-42', occurrence: 'evt-123' };

  it('is pinned: the same (journey, step, user, occurrence) gives this id in every process and version', () => {
    // The same construction as touches/touch-id.ts (t + 32 hex of SHA-256 over length-prefixed parts).
    expect(touchIdOf(key)).toBe('t62883b0fb2f9ad24ad755f2560e3b4fb');
    expect(touchIdOf({ ...key, occurrence: '1700000000000' })).toBe('t138a63f6553ca9f47d695d1167df4493');
  });

  it('is a valid BullMQ job id (no ":", never all digits) and webhook-id (no "."), for any input', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), fc.string(), (journeyId, stepId, userId, occurrence) => {
        const id = touchIdOf({ journeyId, stepId, userId, occurrence });
        expect(id).toMatch(/^t[0-9a-f]{32}$/);
        expect(isValidTouchId(id)).toBe(true);
        expect(`${parseInt(id, 10)}`).not.toBe(id); // BullMQ's own integer check
      }),
      PROPERTY,
    );
  });

  it('changes with every part, and parts cannot run into each other', () => {
    const base = touchIdOf(key);
    for (const part of ['journeyId', 'stepId', 'userId', 'occurrence'] as const) expect(touchIdOf({ ...key, [part]: `${key[part]}x` })).not.toBe(base);
    expect(touchIdOf({ ...key, journeyId: 'ab', stepId: 'c' })).not.toBe(touchIdOf({ ...key, journeyId: 'a', stepId: 'bc' }));
  });
});

describe('variant and holdout assignment', () => {
  it('is stable: the same user and journey always get the same assignment', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.string(), (journeyId, userId) => {
        const j = journey({ id: journeyId, trigger, variants: [{ id: 'A', weight: 1, template: null }, { id: 'B', weight: 2, template: null }], holdout: 0.2 });
        expect(assign(j, policy(), userId)).toEqual(assign(j, policy(), userId));
        expect(unitHash('x', journeyId, userId)).toBe(unitHash('x', journeyId, userId));
      }),
      PROPERTY,
    );
  });

  it('splits users by weight within tolerance', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z][a-z0-9-]{2,20}$/), fc.array(fc.integer({ min: 1, max: 10 }), { minLength: 2, maxLength: 4 }), (journeyId, weights) => {
        const variants = weights.map((weight, i) => ({ id: `V${i}`, weight, template: null }));
        const j = { id: journeyId, variants };
        const counts = new Map<string, number>();
        for (const u of USERS) counts.set(pickVariant(j, u), (counts.get(pickVariant(j, u)) ?? 0) + 1);
        const total = weights.reduce((a, b) => a + b, 0);
        variants.forEach((v) => expect(Math.abs((counts.get(v.id) ?? 0) / USERS.length - v.weight / total)).toBeLessThan(0.03));
      }),
      PROPERTY,
    );
  });

  it('holds out the configured share within tolerance, independently of the variant', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z][a-z0-9-]{2,20}$/), fc.constantFrom(0.05, 0.1, 0.25, 0.5), (journeyId, share) => {
        const j = journey({ id: journeyId, trigger, holdout: share, variants: [{ id: 'A', weight: 1, template: null }, { id: 'B', weight: 1, template: null }] });
        let held = 0;
        let heldA = 0;
        for (const u of USERS) {
          const a = assign(j, policy(), u);
          if (a.group === 'holdout') {
            held++;
            if (a.variant === 'A') heldA++;
          }
        }
        expect(Math.abs(held / USERS.length - share)).toBeLessThan(0.025);
        expect(Math.abs(heldA / held - 0.5)).toBeLessThan(0.1);
      }),
      PROPERTY,
    );
  });

  it('without variants the variant is ""; with no holdout nobody is held out', () => {
    const j = journey({ id: 'plain', trigger });
    expect(USERS.slice(0, 500).every((u) => assign(j, policy(), u).group === 'variant' && assign(j, policy(), u).variant === '')).toBe(true);
  });

  it('the global holdout: its share, stable per user, reshuffled by a new salt, and ignored by opted-out journeys', () => {
    const p = policy({ globalHoldout: 0.1, holdoutSalt: '2026q4' });
    const held = USERS.filter((u) => inGlobalHoldout(p, u));
    expect(Math.abs(held.length / USERS.length - 0.1)).toBeLessThan(0.02);
    const again = USERS.filter((u) => inGlobalHoldout(policy({ globalHoldout: 0.1, holdoutSalt: '2026q4' }), u));
    expect(again).toEqual(held);
    const rotated = new Set(USERS.filter((u) => inGlobalHoldout(policy({ globalHoldout: 0.1, holdoutSalt: '2027q1' }), u)));
    expect(held.filter((u) => rotated.has(u)).length / held.length).toBeLessThan(0.2);
    // The same users are held out of every journey that uses it (a user-level holdout).
    const a = journey({ id: 'a', trigger });
    const b = journey({ id: 'b', trigger });
    for (const u of held) {
      expect(assign(a, p, u).group).toBe('global_holdout');
      expect(assign(b, p, u).group).toBe('global_holdout');
      expect(assign({ ...a, useGlobalHoldout: false }, p, u).group).toBe('variant');
    }
  });
});
