import { describe, expect, it } from 'vitest';
import { isValidTouchId } from '../../src/rules/assignment.js';
import { dayNumber } from '../../src/time/calendar.js';
import { DAY, event, HOUR, journey, match, MIN, rules, SimUser, T0 } from '../support/rules-fixtures.js';

/** Every trigger type of the journey language, on virtual time. */

describe('trigger: an event matching a filter', () => {
  const spec = rules([
    journey({
      id: 'salary',
      trigger: {
        type: 'event',
        match: match('salary_credited', {
          channels: ['app', 'web'],
          value: { gte: 1000 },
          props: [
            { key: 'bank', test: { kind: 'in', values: ['icbc', 'boc'] } },
            { key: 'currency', test: { kind: 'equals', value: 'CNY' } },
            { key: 'months', test: { kind: 'range', range: { gt: 0, lte: 12 } } },
            { key: 'test_account', test: { kind: 'exists', present: false } },
          ],
        }),
      },
      attributes: ['segment', 'first_name_initial'],
    }),
  ]);
  const good = { channel: 'app', value: 5000, props: { bank: 'icbc', currency: 'CNY', months: '3' } };

  it('fires on a matching event: one touch, sent now, with the listed traits only', () => {
    const u = new SimUser(spec, 'u1', { traits: { segment: 'retail', phone: '13800000000' } });
    const e = event('salary_credited', T0, good);
    const r = u.event(e);
    expect(r.touches).toHaveLength(1);
    const t = r.touches[0]!;
    expect(t).toMatchObject({
      journeyId: 'salary',
      stepId: 'main',
      userId: 'u1',
      occurrence: e.eventId,
      triggerEventId: e.eventId,
      triggeredAt: T0,
      sendAt: T0,
      channel: 'push',
      template: 'salary_tpl',
      outcome: 'send',
      reason: 'sent',
      attributes: { segment: 'retail', first_name_initial: null },
    });
    expect(isValidTouchId(t.touchId)).toBe(true);
    expect(JSON.stringify(t)).not.toContain('13800000000');
  });

  it.each([
    ['another name', { name: 'salary_reversed' }],
    ['another channel', { channel: 'wechat' }],
    ['a value below the bound', { value: 999 }],
    ['a prop outside the set', { props: { ...good.props, bank: 'hsbc' } }],
    ['a prop that differs', { props: { ...good.props, currency: 'USD' } }],
    ['a numeric prop out of range', { props: { ...good.props, months: '13' } }],
    ['a numeric prop that is not a number', { props: { ...good.props, months: 'three' } }],
    ['a numeric prop that is empty', { props: { ...good.props, months: '' } }],
    ['a prop that must be absent', { props: { ...good.props, test_account: '1' } }],
    ['a missing prop', { props: { bank: 'icbc', months: '3' } }],
  ])('does not fire on %s', (_name, over) => {
    const u = new SimUser(spec);
    const { name, ...rest } = { name: 'salary_credited', ...good, ...over };
    expect(u.event(event(name, T0, rest)).touches).toEqual([]);
  });
});

describe('trigger: N matching events within W (count)', () => {
  const spec = rules([
    journey({ id: 'loan', trigger: { type: 'count', counter: 'loan_views', match: match('page_view', { props: [{ key: 'page', test: { kind: 'equals', value: 'loan_detail' } }] }), atLeast: 3, withinMs: DAY } }),
  ]);
  const view = (t: number) => event('page_view', t, { props: { page: 'loan_detail' } });

  it('fires when the event takes the count to N, and not again above it', () => {
    const u = new SimUser(spec);
    const times = [T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR];
    const counts = times.map((_, i) => times.slice(0, i + 1));
    expect(u.event(view(times[0]!), times[0], { counters: { loan_views: counts[0]! } }).touches).toHaveLength(0);
    expect(u.event(view(times[1]!), times[1], { counters: { loan_views: counts[1]! } }).touches).toHaveLength(0);
    expect(u.event(view(times[2]!), times[2], { counters: { loan_views: counts[2]! } }).touches).toHaveLength(1);
    expect(u.event(view(times[3]!), times[3], { counters: { loan_views: counts[3]!.slice(-3) } }).touches).toHaveLength(0);
  });

  it('counts only within the window: views spread over more than 24h do not fire', () => {
    const u = new SimUser(spec);
    const t3 = T0 + 25 * HOUR;
    const r = u.event(view(t3), t3, { counters: { loan_views: [T0, T0 + 12 * HOUR, t3] } });
    expect(r.touches).toEqual([]);
  });

  it('fires only on an event the counter counts', () => {
    const u = new SimUser(spec, 'u1', { counters: { loan_views: [T0, T0 + 1] } });
    const r = u.event(event('page_view', T0 + 2, { props: { page: 'fund_detail' } }), T0 + 2, { counters: { loan_views: [T0, T0 + 1, T0 + 2] } });
    expect(r.touches).toEqual([]);
  });
});

describe('trigger: inactivity for D (on time, by timer)', () => {
  const spec = rules([journey({ id: 'winback', trigger: { type: 'inactive', forMs: 14 * DAY, match: null } })]);

  it('arms a deadline on each event and fires when it passes with no event, occurrence = due time', () => {
    const u = new SimUser(spec);
    const r1 = u.event(event('login', T0));
    expect(r1.nextDueAt).toBe(T0 + 14 * DAY);
    expect(r1.scheduled).toEqual([{ kind: 'inactive', journeyId: 'winback', dueAt: T0 + 14 * DAY }]);
    expect(u.tick(T0 + 14 * DAY - 1).touches).toEqual([]);
    const fired = u.tick(T0 + 14 * DAY + 500);
    expect(fired.touches).toHaveLength(1);
    expect(fired.touches[0]).toMatchObject({ occurrence: String(T0 + 14 * DAY), triggerEventId: '', sendAt: T0 + 14 * DAY + 500 });
    expect(fired.nextDueAt).toBeNull();
  });

  it('pushes the deadline back when the user is active again', () => {
    const u = new SimUser(spec);
    u.event(event('login', T0));
    const r = u.event(event('login', T0 + 5 * DAY));
    expect(r.nextDueAt).toBe(T0 + 19 * DAY);
    expect(u.tick(T0 + 14 * DAY).touches).toEqual([]);
    expect(u.tick(T0 + 19 * DAY).touches).toHaveLength(1);
  });

  it('with a match, only matching events count as activity', () => {
    const only = rules([journey({ id: 'no-transfer', trigger: { type: 'inactive', forMs: 7 * DAY, match: match('transfer_done') } })]);
    const u = new SimUser(only);
    expect(u.event(event('login', T0)).nextDueAt).toBeNull();
    u.event(event('transfer_done', T0 + HOUR));
    expect(u.event(event('login', T0 + 2 * DAY)).nextDueAt).toBe(T0 + HOUR + 7 * DAY);
  });

  it('fires nothing for a deadline overdue by more than maxTriggerAge (engine was down): stale_timer', () => {
    const u = new SimUser(spec);
    u.event(event('login', T0));
    const r = u.tick(T0 + 14 * DAY + 2 * HOUR);
    expect(r.touches).toEqual([]);
    expect(r.skipped).toEqual([{ journeyId: 'winback', reason: 'stale_timer', occurrence: String(T0 + 14 * DAY), detail: '' }]);
  });
});

describe('trigger: A not followed by B within T (absence)', () => {
  const flow = rules([
    journey({ id: 'transfer', trigger: { type: 'notFollowedBy', first: match('transfer_start'), then: match('transfer_done'), withinMs: 30 * MIN, by: 'flow_id' } }),
  ]);
  const start = (t: number, flowId: string) => event('transfer_start', t, { props: { flow_id: flowId } });
  const done = (t: number, flowId?: string) => event('transfer_done', t, { props: flowId === undefined ? {} : { flow_id: flowId } });

  it('fires exactly once when T passes with no B, occurrence = the A event id', () => {
    const u = new SimUser(flow);
    const a = start(T0, 'f1');
    expect(u.event(a).nextDueAt).toBe(T0 + 30 * MIN);
    const r = u.tick(T0 + 30 * MIN);
    expect(r.touches).toHaveLength(1);
    expect(r.touches[0]).toMatchObject({ occurrence: a.eventId, triggerEventId: '', sendAt: T0 + 30 * MIN });
    expect(r.nextDueAt).toBeNull();
    expect(u.tick(T0 + 31 * MIN).touches).toEqual([]);
  });

  it('is cancelled by B in time, paired on the flow id', () => {
    const u = new SimUser(flow);
    u.event(start(T0, 'f1'));
    u.event(start(T0 + MIN, 'f2'));
    const b = u.event(done(T0 + 10 * MIN, 'f1'));
    expect(b.cancellations).toEqual([{ journeyId: 'transfer', reason: 'followed_by', kind: 'absence_wait', touchId: '', key: 'f1' }]);
    const fired = u.runTimersUntil(T0 + 2 * HOUR).flatMap((r) => r.touches);
    expect(fired).toHaveLength(1);
    expect(fired[0]!.sendAt).toBe(T0 + 31 * MIN);
  });

  it('a B without the flow id cancels nothing; a second A of the same flow keeps the first deadline', () => {
    const u = new SimUser(flow);
    u.event(start(T0, 'f1'));
    expect(u.event(start(T0 + 5 * MIN, 'f1')).scheduled).toEqual([]);
    expect(u.event(done(T0 + 6 * MIN)).cancellations).toEqual([]);
    expect(u.tick(T0 + 30 * MIN).touches).toHaveLength(1);
  });

  it('counts a late B (after the reminder was decided) instead of ignoring it, once', () => {
    const u = new SimUser(flow);
    u.event(start(T0, 'f1'));
    u.tick(T0 + 30 * MIN);
    const late = u.event(done(T0 + 40 * MIN, 'f1'));
    expect(late.lateFollowUps).toMatchObject([{ journeyId: 'transfer', key: 'f1', dueAt: T0 + 30 * MIN, at: T0 + 40 * MIN }]);
    expect(u.event(done(T0 + 41 * MIN, 'f1')).lateFollowUps).toEqual([]);
  });

  it('a B that arrives after the deadline, before the sweep ran, is late: the wait still fires', () => {
    const u = new SimUser(flow);
    u.event(start(T0, 'f1'));
    const r = u.event(done(T0 + 31 * MIN, 'f1'), T0 + 31 * MIN);
    expect(r.touches).toHaveLength(1);
    expect(r.lateFollowUps).toHaveLength(1);
  });

  it('without by, a B ends the pending wait', () => {
    const plain = rules([journey({ id: 'apply', trigger: { type: 'notFollowedBy', first: match('loan_form_open'), then: match('loan_apply'), withinMs: DAY, by: null } })]);
    const u = new SimUser(plain);
    u.event(event('loan_form_open', T0));
    expect(u.event(event('loan_apply', T0 + HOUR)).cancellations).toHaveLength(1);
    expect(u.tick(T0 + DAY).touches).toEqual([]);
  });

  it('an A older than maxTriggerAge starts no wait (stale_event)', () => {
    const u = new SimUser(flow);
    const r = u.event(start(T0, 'f1'), T0 + 2 * HOUR);
    expect(r.scheduled).toEqual([]);
    expect(r.skipped.map((s) => s.reason)).toEqual(['stale_event']);
  });
});

describe('trigger: a streak reaching K days', () => {
  const spec = rules([journey({ id: 'streak3', trigger: { type: 'streak', streak: 'checkin', reaches: 3 } })]);
  const day = (n: number) => dayNumber(T0, 'Asia/Shanghai') + n; // T0 is 2026-11-02 08:00 in Shanghai

  it('fires on the day the run reaches K, not on later check-ins that day or after', () => {
    const u = new SimUser(spec, 'u1', { streaks: { checkin: { current: 2, last: day(0) } } });
    const t = Date.UTC(2026, 10, 3, 2); // 2026-11-03 10:00 in Shanghai = day 20395
    expect(u.event(event('checkin', t), t, { streaks: { checkin: { current: 3, last: day(1) } } }).touches).toHaveLength(1);
    expect(u.event(event('checkin', t + HOUR), t + HOUR).touches).toHaveLength(0);
    expect(u.event(event('checkin', t + DAY), t + DAY, { streaks: { checkin: { current: 4, last: day(2) } } }).touches).toHaveLength(0);
  });

  it('a broken streak counts from zero: reaching K again fires again', () => {
    const u = new SimUser(spec, 'u1', { streaks: { checkin: { current: 5, last: day(-10) } } });
    const t = Date.UTC(2026, 10, 3, 2);
    expect(u.event(event('checkin', t), t, { streaks: { checkin: { current: 1, last: day(1) } } }).touches).toHaveLength(0);
    expect(u.event(event('checkin', t + DAY), t + DAY, { streaks: { checkin: { current: 2, last: day(2) } } }).touches).toHaveLength(0);
    expect(u.event(event('checkin', t + 2 * DAY), t + 2 * DAY, { streaks: { checkin: { current: 3, last: day(3) } } }).touches).toHaveLength(1);
  });
});

describe('trigger: a lifecycle stage transition', () => {
  const spec = rules([
    journey({ id: 'dormant', trigger: { type: 'stage', from: ['active', 'new'], to: ['dormant'] } }),
    journey({ id: 'back', trigger: { type: 'stage', from: ['dormant', 'churned'], to: [] } }),
    journey({ id: 'welcome', trigger: { type: 'stage', from: [], to: ['new'] } }),
  ]);

  it('going dormant on time (a timer tick): occurrence = the transition time', () => {
    const u = new SimUser(spec);
    const since = T0 + 14 * DAY;
    const r = u.tick(since + 1_000, { stage: 'dormant', stageSince: since });
    expect(r.touches.map((t) => [t.journeyId, t.occurrence, t.triggerEventId])).toEqual([['dormant', String(since), '']]);
  });

  it('coming back by an event: from dormant to anything', () => {
    const u = new SimUser(spec, 'u1', { stage: 'dormant', stageSince: T0 - DAY });
    const e = event('login', T0);
    const r = u.event(e, T0, { stage: 'reactivated', stageSince: T0 });
    expect(r.touches.map((t) => [t.journeyId, t.occurrence])).toEqual([['back', e.eventId]]);
  });

  it('a new user (no state before) enters the new stage', () => {
    const u = new SimUser(spec, 'u1', { stage: 'new', stageSince: T0, firstSeen: T0 }, { newUser: true });
    expect(u.event(event('register', T0)).touches.map((t) => t.journeyId)).toEqual(['welcome']);
  });

  it('no change, no trigger; a transition recorded long ago by a late sweep is stale', () => {
    const u = new SimUser(spec);
    expect(u.tick(T0).touches).toEqual([]);
    const r = u.tick(T0 + 3 * HOUR, { stage: 'dormant', stageSince: T0 });
    expect(r.skipped).toEqual([{ journeyId: 'dormant', reason: 'stale_timer', occurrence: String(T0), detail: '' }]);
  });
});

describe('trigger: the first occurrence of an event', () => {
  const spec = rules([journey({ id: 'first-card', trigger: { type: 'firstTime', match: match('card_used') } })]);

  it('fires once per user, ever', () => {
    const u = new SimUser(spec);
    expect(u.event(event('card_used', T0)).touches).toHaveLength(1);
    expect(u.event(event('card_used', T0 + DAY)).touches).toHaveLength(0);
    expect(u.state!.firstTimeSeen).toEqual(['first-card']);
  });

  it('a stale first occurrence is used up without a touch (it was the first)', () => {
    const u = new SimUser(spec);
    expect(u.event(event('card_used', T0), T0 + 2 * HOUR).skipped.map((s) => s.reason)).toEqual(['stale_event']);
    expect(u.event(event('card_used', T0 + 3 * HOUR)).touches).toHaveLength(0);
  });
});

describe('stale events', () => {
  it('an event older than maxTriggerAge by the wall clock triggers nothing (stale_event)', () => {
    const spec = rules([journey({ id: 'j', trigger: { type: 'event', match: match('login') } })]);
    const u = new SimUser(spec);
    const e = event('login', T0);
    const r = u.event(e, T0 + HOUR + 1);
    expect(r.touches).toEqual([]);
    expect(r.skipped).toEqual([{ journeyId: 'j', reason: 'stale_event', occurrence: e.eventId, detail: '' }]);
    expect(u.event(event('login', T0), T0 + HOUR).touches).toHaveLength(1);
  });
});
