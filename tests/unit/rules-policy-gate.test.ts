import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkCaps } from '../../src/rules/caps.js';
import { applyConsentEvent } from '../../src/rules/consent.js';
import type { ConsentRecord, TouchRecord } from '../../src/rules/journey-state.js';
import { gateTouch, type GateInput } from '../../src/rules/policy-gate.js';
import { quietHoursAt } from '../../src/rules/quiet-hours.js';
import { dayNumber } from '../../src/time/calendar.js';
import type { CapSpec, PolicySpec } from '../../src/rules/rules-spec.js';
import { DAY, event, HOUR, journey, match, MIN, policy, rules, SimUser, T0 } from '../support/rules-fixtures.js';

/** The policy gate: every rule, in the user's zone, on virtual time. T0 = Mon 2026-11-02 08:00 Shanghai. */

const SH = 'Asia/Shanghai';
const sent = (at: number, channel = 'push', journeyId = 'other'): TouchRecord => ({ at, channel, journeyId, touchId: `t${at}${channel}` });

function input(over: Partial<GateInput> = {}): GateInput {
  return {
    journey: { quietHours: null, ignoreCaps: false, budget: null },
    channels: ['push'],
    group: 'variant',
    sendAt: T0 + 4 * HOUR, // 12:00 local
    tz: SH,
    consent: {},
    history: [],
    sameStep: [],
    budget: null,
    ...over,
  };
}

describe('holdout', () => {
  it.each(['holdout', 'global_holdout'] as const)('%s: no touch, outcome holdout, before any other check', (group) => {
    const p = policy({ consent: { defaultGranted: false, channelDefaults: {}, events: [] } });
    expect(gateTouch(p, input({ group }))).toMatchObject({ outcome: 'holdout', reason: group, cost: 0 });
  });
});

describe('consent per channel', () => {
  it('no recorded choice: the channel default, else the global default (no_consent)', () => {
    const p = policy({ consent: { defaultGranted: true, channelDefaults: { sms: false }, events: [] } });
    expect(gateTouch(p, input({ channels: ['sms'] }))).toMatchObject({ outcome: 'suppress', reason: 'no_consent', channel: 'sms' });
    expect(gateTouch(p, input({ channels: ['push'] }))).toMatchObject({ outcome: 'send', reason: 'sent' });
  });

  it('a recorded opt-out: opted_out; the next channel in order of preference is used instead', () => {
    const consent: Record<string, ConsentRecord> = { push: { granted: false, at: T0 } };
    expect(gateTouch(policy(), input({ consent }))).toMatchObject({ outcome: 'suppress', reason: 'opted_out', detail: 'push' });
    expect(gateTouch(policy(), input({ consent, channels: ['push', 'sms'] }))).toMatchObject({ outcome: 'send', channel: 'sms' });
  });

  it('opt-out and opt-in events update consent; an older choice does not override a newer one', () => {
    const p = policy({
      consent: {
        defaultGranted: true,
        channelDefaults: {},
        events: [
          { match: match('push_opt_out'), channel: { kind: 'fixed', channel: 'push' }, grant: { kind: 'fixed', grant: false } },
          { match: match('consent_changed'), channel: { kind: 'prop', prop: 'channel' }, grant: { kind: 'prop', prop: 'granted' } },
        ],
      },
    });
    const consent: Record<string, ConsentRecord> = {};
    expect(applyConsentEvent(p, consent, event('push_opt_out', T0))).toEqual([{ channel: 'push', granted: false, at: T0 }]);
    expect(applyConsentEvent(p, consent, event('consent_changed', T0 - 1, { props: { channel: 'push', granted: 'true' } }))).toEqual([]);
    expect(applyConsentEvent(p, consent, event('consent_changed', T0 + 1, { props: { channel: 'sms', granted: 'no' } }))).toEqual([{ channel: 'sms', granted: false, at: T0 + 1 }]);
    expect(applyConsentEvent(p, consent, event('consent_changed', T0 + 2, { props: { channel: 'sms', granted: 'maybe' } }))).toEqual([]);
    expect(applyConsentEvent(p, consent, event('consent_changed', T0 + 2, { props: { channel: 'SMS!', granted: 'yes' } }))).toEqual([]);
    expect(consent).toEqual({ push: { granted: false, at: T0 }, sms: { granted: false, at: T0 + 1 } });
  });

  it('through the journey step: an opt-out event suppresses the touch it would itself trigger', () => {
    const p = policy({ consent: { defaultGranted: true, channelDefaults: {}, events: [{ match: match('push_opt_out'), channel: { kind: 'fixed', channel: 'push' }, grant: { kind: 'fixed', grant: false } }] } });
    const spec = rules([journey({ id: 'any', trigger: { type: 'event', match: match([]) } })], { policy: p });
    const u = new SimUser(spec);
    const r = u.event(event('push_opt_out', T0));
    expect(r.consentChanges).toEqual([{ channel: 'push', granted: false, at: T0 }]);
    expect(r.touches[0]).toMatchObject({ outcome: 'suppress', reason: 'opted_out' });
  });
});

describe('quiet hours in the user\'s zone', () => {
  const q = { fromMinute: 22 * 60, toMinute: 8 * 60, action: 'defer' as const, channels: [] as string[] };
  const at = (h: number, m = 0) => Date.UTC(2026, 10, 2, h - 8, m); // local Shanghai time on 2026-11-02

  it('spans midnight: 22:00-08:00 is quiet, 08:00 is not, 21:59 is not', () => {
    expect(quietHoursAt(q, 'push', at(23), SH)).toEqual({ quiet: true, endsAt: at(32) });
    expect(quietHoursAt(q, 'push', at(3), SH)).toEqual({ quiet: true, endsAt: at(8) });
    expect(quietHoursAt(q, 'push', at(8), SH)).toEqual({ quiet: false });
    expect(quietHoursAt(q, 'push', at(21, 59), SH)).toEqual({ quiet: false });
    expect(quietHoursAt(q, 'push', at(22), SH).quiet).toBe(true);
  });

  it('a daytime window, and channels it does not cover', () => {
    const lunch = { ...q, fromMinute: 12 * 60, toMinute: 13 * 60, channels: ['sms'] };
    expect(quietHoursAt(lunch, 'sms', at(12, 30), SH)).toEqual({ quiet: true, endsAt: at(13) });
    expect(quietHoursAt(lunch, 'push', at(12, 30), SH)).toEqual({ quiet: false });
  });

  it('is read in the user\'s own zone: 23:00 in Shanghai is 16:00 in Berlin', () => {
    expect(quietHoursAt(q, 'push', at(23), 'Europe/Berlin').quiet).toBe(false);
  });

  it('ends at local 08:00 across a daylight-saving change (New York, 2026-11-01 fall back)', () => {
    const ny = 'America/New_York';
    const lateSat = Date.UTC(2026, 10, 1, 3); // 2026-10-31 23:00 EDT
    expect(quietHoursAt(q, 'push', lateSat, ny)).toEqual({ quiet: true, endsAt: Date.UTC(2026, 10, 1, 13) }); // 08:00 EST
  });

  it('defer: sendAt moves to the end (quiet_hours_deferred); drop: suppressed (quiet_hours); the journey may override', () => {
    const p = policy({ quietHours: q });
    expect(gateTouch(p, input({ sendAt: at(23) }))).toMatchObject({ outcome: 'defer', reason: 'quiet_hours_deferred', sendAt: at(32) });
    const drop = policy({ quietHours: { ...q, action: 'drop' } });
    expect(gateTouch(drop, input({ sendAt: at(23) }))).toMatchObject({ outcome: 'suppress', reason: 'quiet_hours', sendAt: at(23) });
    expect(gateTouch(p, input({ sendAt: at(23), journey: { quietHours: 'drop', ignoreCaps: false, budget: null } }))).toMatchObject({ reason: 'quiet_hours' });
    expect(gateTouch(drop, input({ sendAt: at(23), journey: { quietHours: 'defer', ignoreCaps: false, budget: null } }))).toMatchObject({ reason: 'quiet_hours_deferred' });
  });

  it('a user with no zone is read in the reporting zone', () => {
    const spec = rules([journey({ id: 'j', trigger: { type: 'event', match: match('login') } })], { policy: policy({ quietHours: q }) });
    const u = new SimUser(spec, 'u1', { tz: '' });
    expect(u.event(event('login', at(23), { tz: '' })).touches[0]).toMatchObject({ outcome: 'defer', sendAt: at(32) });
  });
});

describe('frequency caps', () => {
  const cap = (over: Partial<CapSpec>): PolicySpec => policy({ caps: [{ name: 'c', channels: [], max: 2, window: { kind: 'rolling', ms: DAY }, ...over }] });

  it('per channel: counts only that channel (cap_channel); across channels: counts all (cap_all_channels)', () => {
    const history = [sent(T0, 'push'), sent(T0 + HOUR, 'sms')];
    expect(checkCaps(cap({ channels: ['push'] }), history, 'push', T0 + 2 * HOUR, SH)).toEqual({ ok: true });
    expect(checkCaps(cap({ channels: ['push'] }), history, 'sms', T0 + 2 * HOUR, SH)).toEqual({ ok: true });
    expect(checkCaps(cap({ channels: ['push'], max: 1 }), history, 'push', T0 + 2 * HOUR, SH)).toEqual({ ok: false, reason: 'cap_channel', detail: 'c' });
    expect(checkCaps(cap({}), history, 'push', T0 + 2 * HOUR, SH)).toEqual({ ok: false, reason: 'cap_all_channels', detail: 'c' });
  });

  it('rolling: a touch 24h after the first is allowed again; touches scheduled ahead count too', () => {
    const history = [sent(T0), sent(T0 + HOUR)];
    expect(checkCaps(cap({}), history, 'push', T0 + HOUR + MIN, SH).ok).toBe(false);
    expect(checkCaps(cap({}), history, 'push', T0 + DAY - 1, SH).ok).toBe(false);
    expect(checkCaps(cap({}), history, 'push', T0 + DAY, SH).ok).toBe(true); // T0 has left the window
    // 2 per 24h; touches at -20h and +20h around a new one: no 24h window holds all three.
    expect(checkCaps(cap({}), [sent(T0 - 20 * HOUR), sent(T0 + 20 * HOUR)], 'push', T0, SH).ok).toBe(true);
    // ...but a touch already scheduled 1h later fills the window.
    expect(checkCaps(cap({}), [sent(T0 - 20 * HOUR), sent(T0 + HOUR)], 'push', T0, SH).ok).toBe(false);
  });

  it('rolling: a touch scheduled ahead only, within one window of the new one, fills a cap of 1 (regression)', () => {
    const one = cap({ max: 1, window: { kind: 'rolling', ms: MIN } });
    // A push is scheduled 53 s ahead; a new one now would put two in the minute [now, now + 60 s).
    expect(checkCaps(one, [sent(T0 + 53_000)], 'push', T0, SH)).toEqual({ ok: false, reason: 'cap_all_channels', detail: 'c' });
    expect(checkCaps(one, [sent(T0 + MIN)], 'push', T0, SH).ok).toBe(true); // exactly a window apart
  });

  it('rolling: agrees with a brute-force scan of every window start (random histories)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -100, max: 100 }), { maxLength: 8 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 60 }), (offsets, max, w) => {
        const times = offsets.map((o) => T0 + o * 1000);
        const windowMs = w * 1000;
        // Every window [x, x + W) that holds T0, scanned millisecond by millisecond over its starts.
        let busiest = 0;
        for (let x = T0 - windowMs + 1; x <= T0; x++) busiest = Math.max(busiest, times.filter((t) => t >= x && t < x + windowMs).length);
        const got = checkCaps(cap({ max, window: { kind: 'rolling', ms: windowMs } }), times.map((t) => sent(t)), 'push', T0, SH).ok;
        expect(got).toBe(busiest < max);
      }),
      { numRuns: 200 },
    );
  });

  it('calendar day in the user\'s zone: 23:00 then 00:05 local is allowed', () => {
    const p = cap({ max: 1, window: { kind: 'calendar', period: 'day' } });
    const elevenPm = Date.UTC(2026, 10, 2, 15); // 23:00 Shanghai
    expect(checkCaps(p, [sent(elevenPm)], 'push', elevenPm + 65 * MIN, SH).ok).toBe(true);
    expect(checkCaps(p, [sent(elevenPm)], 'push', elevenPm + 55 * MIN, SH).ok).toBe(false);
    // The same two instants are one day in Berlin (16:00 and 17:05).
    expect(checkCaps(p, [sent(elevenPm)], 'push', elevenPm + 65 * MIN, 'Europe/Berlin').ok).toBe(false);
  });

  it('calendar week (ISO, Monday first) and month', () => {
    const week = cap({ max: 1, window: { kind: 'calendar', period: 'week' } });
    const sunday = T0 - DAY; // Sun 2026-11-01 08:00 Shanghai
    expect(checkCaps(week, [sent(sunday)], 'push', T0, SH).ok).toBe(true);
    expect(checkCaps(week, [sent(T0)], 'push', T0 + 6 * DAY, SH).ok).toBe(false);
    const month = cap({ max: 1, window: { kind: 'calendar', period: 'month' } });
    expect(checkCaps(month, [sent(T0)], 'push', T0 + 27 * DAY, SH).ok).toBe(false); // Nov 29
    expect(checkCaps(month, [sent(T0)], 'push', T0 + 29 * DAY, SH).ok).toBe(true); // Dec 1
  });

  it('the most restrictive of several caps wins', () => {
    const p = policy({
      caps: [
        { name: 'weekly', channels: [], max: 5, window: { kind: 'calendar', period: 'week' } },
        { name: 'daily_push', channels: ['push'], max: 1, window: { kind: 'calendar', period: 'day' } },
      ],
    });
    expect(gateTouch(p, input({ history: [sent(T0)] }))).toMatchObject({ outcome: 'suppress', reason: 'cap_channel', detail: 'daily_push' });
  });

  it('minimum gap between touches, either side (min_gap)', () => {
    const p = policy({ minGapMs: HOUR });
    expect(gateTouch(p, input({ sendAt: T0 + 30 * MIN, history: [sent(T0)] }))).toMatchObject({ reason: 'min_gap' });
    expect(gateTouch(p, input({ sendAt: T0 - 30 * MIN, history: [sent(T0)] }))).toMatchObject({ reason: 'min_gap' });
    expect(gateTouch(p, input({ sendAt: T0 + HOUR, history: [sent(T0)] }))).toMatchObject({ reason: 'sent' });
  });

  it('caps are checked at the deferred send time', () => {
    const p = policy({
      quietHours: { fromMinute: 22 * 60, toMinute: 8 * 60, action: 'defer', channels: [] },
      caps: [{ name: 'daily', channels: [], max: 1, window: { kind: 'calendar', period: 'day' } }],
    });
    const lateEvening = Date.UTC(2026, 10, 2, 15); // 23:00 local; deferred to 08:00 tomorrow
    expect(gateTouch(p, input({ sendAt: lateEvening, history: [sent(lateEvening - 3 * HOUR)] }))).toMatchObject({ outcome: 'defer', sendAt: Date.UTC(2026, 10, 3, 0) });
    expect(gateTouch(p, input({ sendAt: lateEvening, history: [sent(Date.UTC(2026, 10, 3, 5))] }))).toMatchObject({ reason: 'cap_all_channels' });
  });

  it('a journey that ignores caps is neither limited nor counted', () => {
    const p = policy({ caps: [{ name: 'c', channels: [], max: 1, window: { kind: 'rolling', ms: DAY } }], minGapMs: HOUR });
    expect(gateTouch(p, input({ history: [sent(T0)], sendAt: T0 + MIN, journey: { quietHours: null, ignoreCaps: true, budget: null } }))).toMatchObject({ reason: 'sent' });
    const spec = rules(
      [
        journey({ id: 'rm', priority: 9, trigger: { type: 'event', match: match('x') }, ignoreCaps: true }),
        journey({ id: 'offer', trigger: { type: 'event', match: match('x') } }),
      ],
      { policy: p },
    );
    const r = new SimUser(spec).event(event('x', T0));
    expect(r.touches.map((t) => [t.journeyId, t.reason])).toEqual([['rm', 'sent'], ['offer', 'sent']]);
    expect(r.state.history.map((h) => h.journeyId)).toEqual(['offer']);
  });
});

describe('journey priority when caps conflict', () => {
  it('touches decided together are gated highest priority first; the loser says priority_conflict', () => {
    const p = policy({ caps: [{ name: 'one_a_day', channels: [], max: 1, window: { kind: 'calendar', period: 'day' } }] });
    const spec = rules(
      [
        journey({ id: 'quiz', priority: 1, trigger: { type: 'event', match: match('salary_credited') } }),
        journey({ id: 'autoinvest', priority: 40, trigger: { type: 'event', match: match('salary_credited') } }),
      ],
      { policy: p },
    );
    const r = new SimUser(spec).event(event('salary_credited', T0));
    expect(r.touches.map((t) => [t.journeyId, t.outcome, t.reason, t.detail])).toEqual([
      ['autoinvest', 'send', 'sent', ''],
      ['quiz', 'suppress', 'priority_conflict', 'one_a_day'],
    ]);
  });

  it('a cap already full before the step is a plain cap suppression, not a priority conflict', () => {
    const p = policy({ caps: [{ name: 'one_a_day', channels: [], max: 1, window: { kind: 'calendar', period: 'day' } }] });
    expect(gateTouch(p, input({ history: [sent(T0)], sameStep: [sent(T0 + MIN)] }))).toMatchObject({ reason: 'cap_all_channels' });
  });
});

describe('budget', () => {
  const budgeted = { quietHours: null, ignoreCaps: false, budget: { total: 100, perDay: 10, costPerTouch: 4 } };

  it('returns the cost; nothing spent yet = the whole budget', () => {
    expect(gateTouch(policy(), input({ journey: budgeted }))).toMatchObject({ outcome: 'send', cost: 4 });
  });

  it('budget_total and budget_daily when what is left cannot pay for the touch', () => {
    expect(gateTouch(policy(), input({ journey: budgeted, budget: { total: 3, today: 10 } }))).toMatchObject({ outcome: 'suppress', reason: 'budget_total', cost: 0 });
    expect(gateTouch(policy(), input({ journey: budgeted, budget: { total: 50, today: 3 } }))).toMatchObject({ outcome: 'suppress', reason: 'budget_daily', cost: 0 });
    expect(gateTouch(policy(), input({ journey: budgeted, budget: { total: 4, today: 4 } }))).toMatchObject({ outcome: 'send', cost: 4 });
  });

  it('a touch deferred past midnight is paid from its send day: today\'s spent daily budget does not suppress it', () => {
    const dayOf = (ms: number) => dayNumber(ms, SH);
    const quiet = { quietHours: { fromMinute: 22 * 60, toMinute: 8 * 60, action: 'defer' as const, channels: [] as string[] } };
    const night = Date.UTC(2026, 10, 2, 15); // 23:00 in Shanghai: deferred to 08:00 the next day
    const spentToday = { total: 50, today: 0, day: dayOf(night) };
    // Sent the same day: today's budget is spent.
    expect(gateTouch(policy(), input({ journey: budgeted, budget: spentToday, sendAt: night, budgetDayOf: dayOf }))).toMatchObject({ reason: 'budget_daily' });
    // Deferred to tomorrow: tomorrow's whole perDay pays for it.
    expect(gateTouch(policy(quiet), input({ journey: budgeted, budget: spentToday, sendAt: night, budgetDayOf: dayOf }))).toMatchObject({ outcome: 'defer', reason: 'quiet_hours_deferred', cost: 4 });
    // The total budget is not per day: still checked.
    expect(gateTouch(policy(quiet), input({ journey: budgeted, budget: { ...spentToday, total: 3 }, sendAt: night, budgetDayOf: dayOf }))).toMatchObject({ reason: 'budget_total' });
  });

  it('touches decided in one call spend the budget in turn; the cost counts on the reporting day', () => {
    const spec = rules([
      journey({
        id: 'reminder',
        trigger: { type: 'notFollowedBy', first: match('start'), then: match('done'), withinMs: 30 * MIN, by: 'flow' },
        budget: { total: null, perDay: 10, costPerTouch: 4 },
      }),
    ]);
    const u = new SimUser(spec);
    u.event(event('start', T0, { props: { flow: 'a' } }));
    u.event(event('start', T0 + MIN, { props: { flow: 'b' } }));
    u.budgets = new Map([['reminder', { total: null, today: 6 }]]);
    const r = u.tick(T0 + 31 * MIN);
    expect(r.touches.map((t) => [t.reason, t.cost, t.budgetDay])).toEqual([
      ['sent', 4, dayNumber(T0, 'Asia/Shanghai')],
      ['budget_daily', 0, dayNumber(T0, 'Asia/Shanghai')],
    ]);
  });
});
