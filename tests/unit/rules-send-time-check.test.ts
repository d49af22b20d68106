import { describe, expect, it } from 'vitest';
import { JOURNEY_STATE_BOUNDS, cancelledKeepMs } from '../../src/rules/journey-state.js';
import { refusedAtSend } from '../../src/rules/send-time-check.js';
import type { JourneySpec, StepSpec } from '../../src/rules/rules-spec.js';
import type { TouchDecision } from '../../src/rules/decisions.js';
import { DAY, event, HOUR, journey, match, MIN, policy, rules, SimUser, T0 } from '../support/rules-fixtures.js';

/**
 * The send-time re-check on virtual time: what the worker refuses when a delayed touch's job
 * finally runs. The case this file exists for: an exit cancels a delayed touch, the user
 * re-enters before its sendAt, and the entry the old touch belonged to is gone from the state.
 */

const step = (id: string, delayMs: number): StepSpec => ({ id, timing: { delayMs, at: null, fallbackAt: null }, channels: ['push'], template: null });
const offer = (over: Partial<JourneySpec> = {}) =>
  journey({ id: 'offer', trigger: { type: 'event', match: match('viewed') }, exitOn: [match('applied')], reEntry: { kind: 'cooldown', ms: 10 * MIN }, steps: [step('push', HOUR)], ...over });
const atSend = (u: SimUser, t: TouchDecision) => refusedAtSend(u.spec.policy, u.state, t);

describe('send-time re-check', () => {
  it('refuses a touch cancelled by an exit even after the user re-entered before its sendAt', () => {
    const u = new SimUser(rules([offer()]));
    const first = u.event(event('viewed', T0)).touches[0]!;
    expect(first.sendAt).toBe(T0 + HOUR);
    expect(u.event(event('applied', T0 + 5 * MIN)).cancellations.map((c) => c.touchId)).toContain(first.touchId);
    const second = u.event(event('viewed', T0 + 20 * MIN)).touches[0]!;
    expect(second.outcome).toBe('send');
    expect(second.touchId).not.toBe(first.touchId);
    // The entry now is the new one: the exit identity test alone would let the first through.
    expect(u.state!.entries.offer!.exitedAt).toBeUndefined();
    u.tick(T0 + HOUR);
    expect(atSend(u, first)).toBe('cancelled_before_send');
    expect(atSend(u, second)).toBeNull();
  });

  it('without a re-entry the exit refuses it as exited_before_send; a touch of a live entry passes', () => {
    const u = new SimUser(rules([offer()]));
    const t = u.event(event('viewed', T0)).touches[0]!;
    expect(atSend(u, t)).toBeNull();
    u.event(event('applied', T0 + MIN));
    expect(atSend(u, t)).toBe('exited_before_send');
  });

  it('an opt-out after the decision refuses the touch (no_consent_at_send)', () => {
    const p = policy({ consent: { defaultGranted: true, channelDefaults: {}, events: [{ match: match('stop'), channel: { kind: 'fixed', channel: 'push' }, grant: { kind: 'fixed', grant: false } }] } });
    const u = new SimUser(rules([offer()], { policy: p }));
    const t = u.event(event('viewed', T0)).touches[0]!;
    u.event(event('stop', T0 + MIN));
    expect(atSend(u, t)).toBe('no_consent_at_send');
  });

  it('the cancelled ids are kept past sendAt for a day (or the longest step delay), then forgotten', () => {
    const spec = rules([offer()]);
    expect(cancelledKeepMs(spec)).toBe(DAY);
    expect(cancelledKeepMs(rules([offer({ steps: [step('push', 3 * DAY)] })]))).toBe(3 * DAY);
    const u = new SimUser(spec);
    const t = u.event(event('viewed', T0)).touches[0]!;
    u.event(event('applied', T0 + MIN));
    expect(u.state!.cancelled).toEqual([{ touchId: t.touchId, until: T0 + HOUR + DAY }]);
    u.event(event('viewed', T0 + HOUR + DAY - 2)); // a re-entry: only the recorded id stops it now
    expect(atSend(u, t)).toBe('cancelled_before_send');
    u.event(event('other', T0 + HOUR + DAY));
    expect(u.state!.cancelled).toEqual([]);
  });

  it('stays bounded: past the bound the id expiring first makes room', () => {
    const u = new SimUser(rules([offer({ reEntry: { kind: 'cooldown', ms: 1 } })]));
    const ids: string[] = [];
    const n = JOURNEY_STATE_BOUNDS.cancelled + 3;
    for (let i = 0; i < n; i++) {
      ids.push(u.event(event('viewed', T0 + i * MIN)).touches[0]!.touchId);
      u.event(event('applied', T0 + i * MIN + 1));
    }
    expect(u.state!.cancelled).toHaveLength(JOURNEY_STATE_BOUNDS.cancelled);
    expect(u.state!.cancelled.map((c) => c.touchId)).toEqual(ids.slice(3));
  });
});
