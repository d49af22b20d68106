import { describe, expect, it } from 'vitest';
import type { AppEvent } from '../../src/contract/event.js';
import { applyEvents, applyTimers } from '../../src/state/decide.js';
import { counterWithin, windowSum } from '../../src/state/windows.js';
import type { StateSpec } from '../../src/state/spec.js';
import type { UserState } from '../../src/state/user-state.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;
// 2026-11-02 00:00 in Shanghai; day numbers below are checked against literal dates.
const T0 = Date.UTC(2026, 10, 1, 16);
const D0 = Date.UTC(2026, 10, 2) / DAY;

const spec: StateSpec = {
  reportingTimeZone: 'Asia/Shanghai',
  allowedLatenessMs: 2 * HOUR,
  maxFutureSkewMs: 5 * 60_000,
  metrics: [
    { name: 'active', events: null },
    { name: 'financial', events: new Set(['transfer_done']) },
  ],
  lifecycle: { newForMs: 7 * DAY, dormantAfterMs: 14 * DAY, churnedAfterMs: 30 * DAY, reactivatedForMs: 7 * DAY },
  counters: [{ name: 'loan_views', filter: { names: new Set(['page_view']), props: { page: 'loan_detail' } }, keep: 3, withinMs: 24 * HOUR }],
  sums: [{ name: 'transfers_7d', filter: { names: new Set(['transfer_done']), props: {} }, windowMs: 7 * DAY, bucketMs: DAY }],
  streaks: [{ name: 'checkin', filter: { names: new Set(['checkin']), props: {} } }],
  traitKeys: ['segment'],
  breakdowns: [],
  deviceSignups: [],
};

let n = 0;
function ev(userId: string, timeMs: number, name = 'login', props: Record<string, string> = {}, value = 0): AppEvent {
  return { eventId: `e${n++}`, userId, name, timeMs, channel: 'app', props, value, tz: '', deviceId: '', sentMs: 0 };
}

function run(events: AppEvent[], prior = new Map<string, UserState | undefined>(), streamTime = 0, now = T0 + 60 * DAY) {
  return applyEvents(events, prior, streamTime, now, spec);
}

describe('applyEvents', () => {
  it('creates a user: new user of the day, DAU/WAU/MAU increments, stage new, a timer', () => {
    const r = run([ev('u1', T0 + 10 * HOUR)]);
    const s = r.states.get('u1')!;
    expect(s).toMatchObject({ firstSeen: T0 + 10 * HOUR, lastSeen: T0 + 10 * HOUR, stage: 'new' });
    expect(s.active.active).toEqual([D0]);
    expect(r.counters.get('new')).toEqual(new Map([[String(D0), 1]]));
    expect(r.counters.get('a:active:dau')).toEqual(new Map([[String(D0), 1]]));
    expect(r.counters.get('a:active:wau')!.size).toBe(7);
    expect(r.counters.get('a:active:mau')!.size).toBe(30);
    expect(r.counters.has('a:financial:dau')).toBe(false);
    expect(r.timers.get('u1')).toBe(T0 + 10 * HOUR + 7 * DAY);
    expect(r.transitions).toEqual([{ userId: 'u1', from: null, to: 'new', at: T0 + 10 * HOUR }]);
  });

  it('ignores a repeated event id and counts it as a duplicate', () => {
    const e = ev('u1', T0 + HOUR, 'transfer_done', {}, 100);
    const r = run([e, { ...e }]);
    expect(r.stats).toMatchObject({ applied: 1, duplicates: 1 });
    expect(r.states.get('u1')!.sums.transfers_7d).toEqual([[Math.floor((T0 + HOUR) / DAY) * DAY, 100]]);
  });

  it('counts events beyond the allowed lateness as late and changes nothing; clamps the far future', () => {
    const now = T0 + 10 * DAY;
    const r = run([ev('u1', T0 + 5 * HOUR), ev('u2', T0 + 2 * HOUR), ev('u3', now + HOUR)], new Map(), T0 + 5 * HOUR, now);
    expect(r.stats).toMatchObject({ applied: 2, late: 1, clamped: 1 });
    expect(r.states.has('u2')).toBe(false);
    expect(r.states.get('u3')!.lastSeen).toBe(now);
  });

  it('does not let a clamped future event move stream time (regression: it made the rest of a replay late)', () => {
    const now = T0 + 60 * DAY; // a backfill: the wall clock is far past the events
    const r = run([ev('u1', T0 + HOUR), ev('u2', now + 400 * DAY), ev('u3', T0 + 2 * HOUR)], new Map(), 0, now);
    expect(r.stats).toMatchObject({ applied: 3, late: 0, clamped: 1 });
    expect(r.streamTime).toBe(T0 + 2 * HOUR);
    expect(r.states.get('u2')!.lastSeen).toBe(now);
  });

  it('leaves the loaded states untouched while a batch updates one copy per user', () => {
    const prior = run([ev('u1', T0)]).states.get('u1')!;
    const before = JSON.stringify(prior);
    const r = run([ev('u1', T0 + DAY), ev('u1', T0 + 2 * DAY, 'checkin'), ev('u1', T0 + 3 * DAY, 'checkin')], new Map([['u1', prior]]), T0, T0 + 4 * DAY);
    expect(JSON.stringify(prior)).toBe(before);
    expect(r.states.get('u1')!.active.active).toEqual([D0, D0 + 1, D0 + 2, D0 + 3]);
    expect(r.states.get('u1')!.streaks.checkin).toMatchObject({ current: 2, best: 2 });
  });

  it('keeps the last N matching times for "N within W" counters', () => {
    const views = [1, 2, 3, 4].map((h) => ev('u1', T0 + h * HOUR, 'page_view', { page: 'loan_detail' }));
    const r = run([...views, ev('u1', T0 + 5 * HOUR, 'page_view', { page: 'home' })]);
    const times = r.states.get('u1')!.counters.loan_views!;
    expect(times).toEqual([T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR]);
    // The window is (t - 24 h, t]: at 26 h + 1 ms the 02:00 view has just left it.
    expect(counterWithin(times, T0 + 26 * HOUR + 1, 24 * HOUR)).toBe(2);
    expect(counterWithin(times, T0 + 27 * HOUR + 1, 24 * HOUR)).toBe(1);
  });

  it('counts check-in streaks in the user zone and resets a broken one', () => {
    const days = [0, 1, 2, 4, 5].map((d) => ev('u1', T0 + d * DAY + 3 * HOUR, 'checkin'));
    const s = run(days).states.get('u1')!;
    expect(s.streaks.checkin).toEqual({ last: D0 + 5, current: 2, best: 3 });
  });

  it('marks a comeback after 14 idle days as reactivated and counts the visit gap', () => {
    const prior = run([ev('u1', T0)]).states.get('u1')!;
    const r = run([ev('u1', T0 + 20 * DAY)], new Map([['u1', prior]]), T0, T0 + 20 * DAY);
    const s = r.states.get('u1')!;
    expect(s.reactivatedAt).toBe(T0 + 20 * DAY);
    expect(s.stage).toBe('reactivated');
    expect(r.counters.get('gap:active')).toEqual(new Map([[`${D0 + 20}:15-30`, 1]]));
    expect(r.transitions.map((t) => t.to)).toEqual(['reactivated']);
    expect(r.counters.get('stages')).toEqual(new Map([['new', -1], ['reactivated', 1]]));
  });

  it('bounds per-user state under hostile input', () => {
    const events = Array.from({ length: 500 }, (_, i) =>
      ev('u1', T0 + i * 1000, 'page_view', Object.fromEntries(Array.from({ length: 20 }, (_, k) => [`segment`, `v${i}-${k}`.repeat(20)]))),
    );
    const s = run(events).states.get('u1')!;
    expect(s.recentIds.length).toBe(32);
    expect(s.traits.segment!.length).toBe(64);
    expect(JSON.stringify(s).length).toBeLessThan(4_000);
  });
});

describe('applyTimers', () => {
  it('records dormancy at its due time with no event, and schedules churn', () => {
    const prior = run([ev('u1', T0)]).states.get('u1')!;
    const r = applyTimers(['u1', 'ghost'], new Map([['u1', prior]]), T0 + 15 * DAY, spec);
    expect(r.states.get('u1')).toMatchObject({ stage: 'dormant', stageSince: T0 + 14 * DAY });
    expect(r.transitions).toEqual([{ userId: 'u1', from: 'new', to: 'dormant', at: T0 + 14 * DAY }]);
    expect(r.timers.get('u1')).toBe(T0 + 30 * DAY);
    expect(r.timers.get('ghost')).toBeNull();
  });
});

describe('windowSum', () => {
  it('sums the buckets overlapping the window (t - W, t]', () => {
    const buckets: Array<[number, number]> = [[0, 1], [DAY, 2], [2 * DAY, 4]];
    expect(windowSum(buckets, 2 * DAY + 5, 2 * DAY, DAY)).toBe(7);
    expect(windowSum(buckets, 3 * DAY, 2 * DAY, DAY)).toBe(6);
    expect(windowSum(buckets, DAY - 1, 7 * DAY, DAY)).toBe(1);
  });
});

describe('breakdowns', () => {
  const withBreakdowns: StateSpec = {
    ...spec,
    metrics: [{ name: 'active', events: null }],
    breakdowns: [
      { name: 'channel', source: { kind: 'channel' }, values: new Set(['app', 'web']), maxValues: 200 },
      { name: 'segment', source: { kind: 'trait', key: 'segment' }, values: null, maxValues: 200 },
    ],
  };
  const at = (userId: string, t: number, channel: string, props: Record<string, string> = {}): AppEvent => ({ ...ev(userId, t, 'login', props), channel });

  it('counts exactly per listed value, "other" for the rest and "unknown" for none; a user counts once per value and window', () => {
    const r = applyEvents(
      [at('u1', T0, 'app'), at('u1', T0 + HOUR, 'app'), at('u1', T0 + 2 * HOUR, 'web'), at('u2', T0, 'wechat'), at('u3', T0, '')],
      new Map(),
      0,
      T0 + DAY,
      withBreakdowns,
    );
    expect(r.counters.get('b:active:channel:dau')).toEqual(
      new Map([
        [`${D0}|app`, 1],
        [`${D0}|web`, 1],
        [`${D0}|other`, 1],
        [`${D0}|unknown`, 1],
      ]),
    );
    expect(r.counters.get('b:active:channel:mau')!.size).toBe(4 * 30);
  });

  it('adds users to a per-day HyperLogLog under the trait the event sets, once per day', () => {
    const r = applyEvents(
      [at('u1', T0, 'app', { segment: 'gold' }), at('u1', T0 + HOUR, 'app'), at('u2', T0, 'app'), at('u1', T0 + DAY, 'app')],
      new Map(),
      0,
      T0 + 2 * DAY,
      withBreakdowns,
    );
    const adds = [...r.hll.values()].map((a) => ({ day: a.day - D0, value: a.value, users: [...a.users] }));
    expect(adds).toEqual([
      { day: 0, value: 'gold', users: ['u1'] },
      { day: 0, value: 'unknown', users: ['u2'] },
      { day: 1, value: 'gold', users: ['u1'] },
    ]);
  });

  it('keeps breakdown state bounded when a user hops over many channels and trait values', () => {
    const events = Array.from({ length: 300 }, (_, i) => at('u1', T0 + i * HOUR, `ch${i}`, { segment: `s${i}` }));
    const s = applyEvents(events, new Map(), 0, T0 + 400 * HOUR, withBreakdowns).states.get('u1')!;
    expect(Object.keys(s.hllSeen!).length).toBeLessThanOrEqual(16);
    expect(Object.keys(s.bActive!).sort()).toEqual(['active/channel/other']);
    expect(JSON.stringify(s).length).toBeLessThan(6_000);
  });
});
