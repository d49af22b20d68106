import { describe, expect, it } from 'vitest';
import { decideJourneys } from '../../src/rules/decide-journeys.js';
import { JOURNEY_STATE_BOUNDS } from '../../src/rules/journey-state.js';
import type { JourneySpec, StepSpec } from '../../src/rules/rules-spec.js';
import { recordActiveHour, stepSendAt, usualActiveHour } from '../../src/rules/send-time.js';
import { DAY, event, facts, HOUR, journey, match, MIN, policy, rules, SimUser, T0 } from '../support/rules-fixtures.js';

/** Steps, delays, exits, re-entry, conditions, conversions and state bounds, on virtual time. */

const SH = 'Asia/Shanghai';
const local = (day: number, h: number, m = 0) => Date.UTC(2026, 10, day, h - 8, m); // Shanghai wall time in Nov 2026
const step = (id: string, timing: Partial<StepSpec['timing']> = {}, over: Partial<StepSpec> = {}): StepSpec => ({
  id,
  timing: { delayMs: 0, at: null, fallbackAt: null, ...timing },
  channels: ['push'],
  template: null,
  ...over,
});
const onEvent = (name: string) => ({ type: 'event' as const, match: match(name) });

describe('step timing', () => {
  it('fixed delay; next local time of day; at least the delay, then the next such time', () => {
    expect(stepSendAt({ delayMs: 30 * MIN, at: null, fallbackAt: null }, T0, SH, null)).toBe(T0 + 30 * MIN);
    expect(stepSendAt({ delayMs: 0, at: 10 * 60, fallbackAt: null }, local(2, 9), SH, null)).toBe(local(2, 10));
    expect(stepSendAt({ delayMs: 0, at: 10 * 60, fallbackAt: null }, local(2, 11), SH, null)).toBe(local(3, 10));
    expect(stepSendAt({ delayMs: 0, at: 10 * 60, fallbackAt: null }, local(2, 10), SH, null)).toBe(local(2, 10));
    expect(stepSendAt({ delayMs: DAY, at: 10 * 60, fallbackAt: null }, local(2, 9), SH, null)).toBe(local(3, 10));
  });

  it('local time is the user\'s: 10:00 in New York is 23:00 in Shanghai', () => {
    const base = Date.UTC(2026, 10, 2, 12); // 07:00 EST
    expect(stepSendAt({ delayMs: 0, at: 10 * 60, fallbackAt: null }, base, 'America/New_York', null)).toBe(Date.UTC(2026, 10, 2, 15));
  });

  it('the usual active hour is learned from the user\'s own events; the fallback until then', () => {
    let hours: number[] | null = null;
    for (const day of [1, 2, 3]) hours = recordActiveHour(hours, local(day, 12, 10), SH);
    hours = recordActiveHour(hours, local(4, 20), SH);
    expect(usualActiveHour(hours)).toBeNull(); // 5 events needed
    hours = recordActiveHour(hours, local(5, 12, 40), SH);
    expect(usualActiveHour(hours)).toBe(12);
    const timing = { delayMs: 0, at: 'usualActiveHour' as const, fallbackAt: 18 * 60 };
    expect(stepSendAt(timing, local(6, 8), SH, hours)).toBe(local(6, 12));
    expect(stepSendAt(timing, local(6, 8), SH, null)).toBe(local(6, 18));
    expect(stepSendAt({ ...timing, fallbackAt: null }, local(6, 8), SH, null)).toBe(local(6, 8));
  });

  it('the histogram stays bounded: at 1000 every hour halves', () => {
    let hours: number[] = new Array<number>(24).fill(0);
    hours[3] = 999;
    hours[12] = 10;
    hours = recordActiveHour(hours, local(2, 3), SH);
    expect(hours[3]).toBe(500);
    expect(hours[12]).toBe(5);
  });

  it('a journey step with a delay is a delayed touch (sendAt ahead); later steps wait for their time', () => {
    const spec = rules([journey({ id: 'seq', trigger: onEvent('signup'), steps: [step('hello', { delayMs: 10 * MIN }), step('tips', { delayMs: DAY, at: 10 * 60 }), step('offer', { delayMs: 2 * DAY })] })]);
    const u = new SimUser(spec);
    const first = u.event(event('signup', local(2, 9)));
    expect(first.touches.map((t) => [t.stepId, t.sendAt])).toEqual([['hello', local(2, 9, 10)]]);
    expect(first.scheduled).toEqual([{ kind: 'step', journeyId: 'seq', step: 1, dueAt: local(3, 10) }]);
    const later = u.runTimersUntil(local(10, 0)).flatMap((r) => r.touches);
    expect(later.map((t) => [t.stepId, t.sendAt])).toEqual([
      ['tips', local(3, 10)],
      ['offer', local(5, 10)],
    ]);
    // Every step of one entry shares its occurrence, so each has its own stable touch id.
    expect(new Set([first.touches[0]!.occurrence, ...later.map((t) => t.occurrence)]).size).toBe(1);
    expect(new Set([first.touches[0]!.touchId, ...later.map((t) => t.touchId)]).size).toBe(3);
  });
});

describe('exit events', () => {
  const spec = rules([
    journey({ id: 'winback', trigger: onEvent('dormant_ping'), exitOn: [match('login')], steps: [step('sms', { delayMs: HOUR }), step('push', { delayMs: 3 * DAY })] }),
  ]);

  it('end the journey: the delayed touch and the later step are cancelled', () => {
    const u = new SimUser(spec);
    const r1 = u.event(event('dormant_ping', T0));
    const touchId = r1.touches[0]!.touchId;
    expect(r1.touches[0]!.sendAt).toBe(T0 + HOUR);
    const r2 = u.event(event('login', T0 + 30 * MIN));
    expect(r2.cancellations).toEqual([
      { journeyId: 'winback', reason: 'exit', kind: 'step_wait', touchId: '', key: '' },
      { journeyId: 'winback', reason: 'exit', kind: 'touch', touchId, key: '' },
    ]);
    expect(r2.nextDueAt).toBeNull();
    expect(u.state!.entries.winback!.exitedAt).toBe(T0 + 30 * MIN);
    expect(u.state!.history).toEqual([]);
  });

  it('a late exit event from before the entry does not end it', () => {
    const u = new SimUser(spec);
    u.event(event('dormant_ping', T0));
    const r = u.event(event('login', T0 - MIN), T0 + MIN);
    expect(r.cancellations).toEqual([]);
    expect(u.state!.entries.winback!.exitedAt).toBeUndefined();
  });

  it('after the touch was sent, an exit cancels only what is still ahead', () => {
    const u = new SimUser(spec);
    u.event(event('dormant_ping', T0));
    const r = u.event(event('login', T0 + 2 * HOUR));
    expect(r.cancellations.map((c) => c.kind)).toEqual(['step_wait']);
    // Nothing was pending any more, and the entry still ends at the exit.
    expect(u.state!.entries.winback!.exitedAt).toBe(T0 + 2 * HOUR);
    expect(u.state!.entries.winback!.pending).toEqual([]);
  });
});

describe('re-entry and priority of the running instance', () => {
  it('never: one entry per user, ever (reentry_never)', () => {
    const u = new SimUser(rules([journey({ id: 'once', trigger: onEvent('x'), reEntry: { kind: 'never' } })]));
    expect(u.event(event('x', T0)).touches).toHaveLength(1);
    expect(u.event(event('x', T0 + 30 * DAY)).skipped.map((s) => s.reason)).toEqual(['reentry_never']);
  });

  it('cool-down: again only once the cool-down after the last entry has passed (reentry_cooldown)', () => {
    const u = new SimUser(rules([journey({ id: 'cool', trigger: onEvent('x'), reEntry: { kind: 'cooldown', ms: DAY } })]));
    u.event(event('x', T0));
    expect(u.event(event('x', T0 + DAY - 1)).skipped.map((s) => s.reason)).toEqual(['reentry_cooldown']);
    expect(u.event(event('x', T0 + DAY)).touches).toHaveLength(1);
  });

  it('a user still in the journey does not enter it again (already_in_journey)', () => {
    const u = new SimUser(rules([journey({ id: 'long', trigger: onEvent('x'), steps: [step('a'), step('b', { delayMs: DAY })] })]));
    u.event(event('x', T0));
    expect(u.event(event('x', T0 + HOUR)).skipped.map((s) => s.reason)).toEqual(['already_in_journey']);
  });

  it('suppressed or held-out users have entered all the same (entry, not delivery, counts)', () => {
    const p = policy({ consent: { defaultGranted: false, channelDefaults: {}, events: [] } });
    const u = new SimUser(rules([journey({ id: 'once', trigger: onEvent('x'), reEntry: { kind: 'never' } })], { policy: p }));
    expect(u.event(event('x', T0)).touches[0]!.reason).toBe('no_consent');
    expect(u.event(event('x', T0 + DAY)).skipped[0]!.reason).toBe('reentry_never');
  });
});

describe('conditions on state, traits and stage', () => {
  const withConditions = (conditions: JourneySpec['conditions']) => rules([journey({ id: 'c', trigger: onEvent('x'), conditions })]);
  const streakDay = 20_759; // T0's day in Shanghai

  it.each([
    ['stage in a list', [{ not: false, kind: 'stage', stages: ['active', 'new'] }], {}, true],
    ['stage not in it', [{ not: false, kind: 'stage', stages: ['dormant'] }], {}, false],
    ['not a stage', [{ not: true, kind: 'stage', stages: ['dormant'] }], {}, true],
    ['trait in a set', [{ not: false, kind: 'trait', trait: 'segment', in: ['retail'], exists: null }], { traits: { segment: 'retail' } }, true],
    ['trait outside the set', [{ not: false, kind: 'trait', trait: 'segment', in: ['retail'], exists: null }], { traits: { segment: 'private' } }, false],
    ['trait absent, in required', [{ not: false, kind: 'trait', trait: 'segment', in: ['retail'], exists: null }], {}, false],
    ['trait exists', [{ not: false, kind: 'trait', trait: 'kyc', in: null, exists: true }], { traits: { kyc: 'done' } }, true],
    ['trait must not exist', [{ not: false, kind: 'trait', trait: 'kyc', in: null, exists: false }], { traits: { kyc: 'done' } }, false],
    ['counter at most 0 in the window', [{ not: false, kind: 'counter', counter: 'apps', withinMs: DAY, atLeast: null, atMost: 0 }], { counters: { apps: [T0 - 2 * DAY] } }, true],
    ['counter above at most', [{ not: false, kind: 'counter', counter: 'apps', withinMs: DAY, atLeast: null, atMost: 0 }], { counters: { apps: [T0 - HOUR] } }, false],
    ['sum at least', [{ not: false, kind: 'sum', sum: 'transfers', atLeast: 1000, atMost: null }], { sums: { transfers: 1500 } }, true],
    ['sum below', [{ not: false, kind: 'sum', sum: 'transfers', atLeast: 1000, atMost: null }], { sums: {} }, false],
    ['live streak at least 3', [{ not: false, kind: 'streak', streak: 'checkin', atLeast: 3, atMost: null }], { streaks: { checkin: { current: 3, last: streakDay - 1 } } }, true],
    ['broken streak', [{ not: false, kind: 'streak', streak: 'checkin', atLeast: 3, atMost: null }], { streaks: { checkin: { current: 9, last: streakDay - 2 } } }, false],
  ] as const)('%s', (_name, conditions, userFacts, enters) => {
    const u = new SimUser(withConditions(conditions as unknown as JourneySpec['conditions']), 'u1', userFacts);
    const r = u.event(event('x', T0));
    expect(r.touches.length).toBe(enters ? 1 : 0);
    if (!enters) expect(r.skipped).toMatchObject([{ reason: 'conditions_not_met', detail: 'conditions[0]' }]);
  });
});

describe('A/B variants, holdout and conversions (intent to treat)', () => {
  const spec = rules([
    journey({
      id: 'offer',
      trigger: onEvent('page_view'),
      variants: [
        { id: 'A', weight: 1, template: null },
        { id: 'B', weight: 1, template: 'offer_b' },
      ],
      holdout: 0.5,
      conversion: { match: match('loan_apply'), withinMs: 7 * DAY },
    }),
  ]);

  it('held-out users get a holdout decision (no job) and still convert; variants carry their template', () => {
    const groups = new Map<string, number>();
    let conversions = 0;
    for (let i = 0; i < 200; i++) {
      const u = new SimUser(spec, `user-${i}`);
      const t = u.event(event('page_view', T0)).touches[0]!;
      groups.set(`${t.group}/${t.variant}`, (groups.get(`${t.group}/${t.variant}`) ?? 0) + 1);
      if (t.group === 'variant') expect(t.template).toBe(t.variant === 'B' ? 'offer_b' : 'offer_tpl');
      else expect(t).toMatchObject({ outcome: 'holdout', reason: 'holdout', cost: 0 });
      const c = u.event(event('loan_apply', T0 + DAY)).conversions;
      expect(c).toEqual([{ journeyId: 'offer', group: t.group, variant: t.variant, occurrence: t.occurrence, enteredAt: T0, at: T0 + DAY, eventId: expect.any(String) }]);
      conversions += c.length;
    }
    expect(conversions).toBe(200);
    expect([...groups.keys()].sort()).toEqual(['holdout/A', 'holdout/B', 'variant/A', 'variant/B']);
  });

  it('a conversion counts once per entry, within the window, and never by the triggering event itself', () => {
    const self = rules([journey({ id: 'j', trigger: onEvent('loan_apply'), conversion: { match: match('loan_apply'), withinMs: DAY } })]);
    const u = new SimUser(self);
    expect(u.event(event('loan_apply', T0)).conversions).toEqual([]);
    const u2 = new SimUser(spec);
    u2.event(event('page_view', T0));
    expect(u2.event(event('loan_apply', T0 + 8 * DAY)).conversions).toEqual([]);
    const u3 = new SimUser(spec);
    u3.event(event('page_view', T0));
    expect(u3.event(event('loan_apply', T0 + HOUR)).conversions).toHaveLength(1);
    expect(u3.event(event('loan_apply', T0 + 2 * HOUR)).conversions).toEqual([]);
  });

  it('the global holdout keeps users out of every journey that uses it', () => {
    const p = policy({ globalHoldout: 0.5, holdoutSalt: 's1' });
    const both = rules(
      [journey({ id: 'marketing', trigger: onEvent('x') }), journey({ id: 'service', trigger: onEvent('x'), useGlobalHoldout: false })],
      { policy: p },
    );
    let held = 0;
    for (let i = 0; i < 100; i++) {
      const ts = new SimUser(both, `u${i}`).event(event('x', T0)).touches;
      const m = ts.find((t) => t.journeyId === 'marketing')!;
      const s = ts.find((t) => t.journeyId === 'service')!;
      expect(s.outcome).toBe('send');
      if (m.reason === 'global_holdout') held++;
      else expect(m.outcome).toBe('send');
    }
    expect(held).toBeGreaterThan(30);
    expect(held).toBeLessThan(70);
  });
});

describe('state: bounds, pruning, purity', () => {
  it('at most 8 absence waits per journey: the oldest makes room (wait_limit)', () => {
    const spec = rules([journey({ id: 'flows', trigger: { type: 'notFollowedBy', first: match('start'), then: match('done'), withinMs: HOUR, by: 'flow' } })]);
    const u = new SimUser(spec);
    for (let i = 0; i < JOURNEY_STATE_BOUNDS.absenceWaitsPerJourney; i++) u.event(event('start', T0 + i, { props: { flow: `f${i}` } }));
    const r = u.event(event('start', T0 + 100, { props: { flow: 'f-new' } }));
    expect(r.skipped).toMatchObject([{ journeyId: 'flows', reason: 'wait_limit' }]);
    expect(u.state!.waits).toHaveLength(JOURNEY_STATE_BOUNDS.absenceWaitsPerJourney);
    expect(u.state!.waits.some((w) => w.kind === 'absence' && w.key === 'f0')).toBe(false);
  });

  it('keeps touch history only as far back as the caps need, at most 64 entries', () => {
    const p = policy({ caps: [{ name: 'weekly', channels: [], max: 50, window: { kind: 'rolling', ms: 7 * DAY } }] });
    const u = new SimUser(rules([journey({ id: 'j', trigger: onEvent('x') })], { policy: p }));
    for (let i = 0; i < 80; i++) u.event(event('x', T0 + i * HOUR));
    expect(u.state!.history.length).toBeLessThanOrEqual(JOURNEY_STATE_BOUNDS.history);
    u.event(event('y', T0 + 20 * DAY));
    expect(u.state!.history).toEqual([]);
  });

  it('records the last touch per journey and per channel; reads a state stored without newer fields', () => {
    const spec = rules([journey({ id: 'j', trigger: onEvent('x'), steps: [step('a', {}, { channels: ['sms'] })] })]);
    const u = new SimUser(spec);
    u.event(event('x', T0));
    expect(u.state!.entries.j!.lastTouch).toEqual({ at: T0, channel: 'sms', stepId: 'a' });
    expect(u.state!.lastTouchByChannel).toEqual({ sms: T0 });
    const old = { entries: {}, waits: [], history: [], consent: {} } as unknown as Parameters<typeof decideJourneys>[1]['state'];
    const r = decideJourneys(spec, { userId: 'u1', now: T0, before: facts(), after: facts(), event: event('x', T0), state: old });
    expect(r.touches).toHaveLength(1);
    expect(r.state.firstTimeSeen).toEqual([]);
  });

  it('drops the state of journeys removed from the config', () => {
    const u = new SimUser(rules([journey({ id: 'old', trigger: onEvent('x'), steps: [step('a'), step('b', { delayMs: DAY })] })]));
    u.event(event('x', T0));
    const r = decideJourneys(rules([journey({ id: 'new', trigger: onEvent('y') })]), { userId: 'u1', now: T0 + MIN, before: facts(), after: facts(), event: null, state: u.state });
    expect(r.state.entries).toEqual({});
    expect(r.state.waits).toEqual([]);
  });

  it('is pure: the input state is not changed and the same input gives the same output', () => {
    const spec = rules([journey({ id: 'j', trigger: onEvent('x'), steps: [step('a'), step('b', { delayMs: DAY })] })]);
    const u = new SimUser(spec);
    u.event(event('x', T0));
    const frozen = JSON.stringify(u.state);
    const input = { userId: 'u1', now: T0 + DAY, before: facts(), after: facts(), event: null, state: u.state };
    const a = decideJourneys(spec, input);
    const b = decideJourneys(spec, input);
    expect(JSON.stringify(u.state)).toBe(frozen);
    expect(a).toEqual(b);
    expect(a.touches).toHaveLength(1);
  });
});
