import { describe, expect, it } from 'vitest';
import { TrafficGenerator, type GeneratedEvent } from '../../src/tools/loadgen/traffic.js';

const HOUR = 3_600_000;
// 2026-11-02 00:00 in Asia/Shanghai (UTC+8, no daylight saving): an independent way to get
// local hours without the generator's own time-zone code.
const START = Date.UTC(2026, 10, 1, 16, 0, 0);
const SHANGHAI_OFFSET = 8 * HOUR;

function take(gen: TrafficGenerator, n: number): GeneratedEvent[] {
  const out: GeneratedEvent[] = [];
  for (let i = 0; i < n; i++) out.push(gen.next());
  return out;
}

function untilArrival(gen: TrafficGenerator, endMs: number): GeneratedEvent[] {
  const out: GeneratedEvent[] = [];
  for (let g = gen.next(); g.arrivalMs < endMs; g = gen.next()) out.push(g);
  return out;
}

const base = { users: 2_000, startMs: START, ratePerSec: 2, reportingTimeZone: 'Asia/Shanghai' };

describe('TrafficGenerator', () => {
  it('gives the same traffic for the same seed and different traffic for another', () => {
    const a = take(new TrafficGenerator({ ...base, seed: 42 }), 3_000);
    const b = take(new TrafficGenerator({ ...base, seed: 42 }), 3_000);
    const c = take(new TrafficGenerator({ ...base, seed: 43 }), 3_000);
    expect(b).toEqual(a);
    expect(c.map((g) => g.event.userId)).not.toEqual(a.map((g) => g.event.userId));
  });

  it('with UUID ids, gives the same events with ids shaped like UUIDs, one per distinct short id', () => {
    const short = take(new TrafficGenerator({ ...base, seed: 42 }), 5_000);
    const uuid = take(new TrafficGenerator({ ...base, seed: 42, idStyle: 'uuid' }), 5_000);
    expect(uuid.map((g) => ({ ...g, event: { ...g.event, eventId: '' } }))).toEqual(short.map((g) => ({ ...g, event: { ...g.event, eventId: '' } })));
    for (const g of uuid) expect(g.event.eventId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$/);
    // A retried delivery keeps its id; distinct events get distinct ids, as with short ids.
    const pairs = new Set(short.map((g, i) => `${g.event.eventId} ${uuid[i]?.event.eventId}`));
    expect(new Set(uuid.map((g) => g.event.eventId)).size).toBe(new Set(short.map((g) => g.event.eventId)).size);
    expect(pairs.size).toBe(new Set(short.map((g) => g.event.eventId)).size);
  });

  describe('one simulated day', () => {
    const day = untilArrival(new TrafficGenerator({ ...base, seed: 7 }), START + 24 * HOUR);
    const events = day.map((g) => g.event);

    it('delivers in arrival order at about the requested average rate', () => {
      const outOfOrder = day.filter((g, i) => i > 0 && g.arrivalMs < day[i - 1]!.arrivalMs).length;
      expect(outOfOrder).toBe(0);
      const expected = base.ratePerSec * 86_400;
      expect(day.length).toBeGreaterThan(expected * 0.85);
      expect(day.length).toBeLessThan(expected * 1.2);
    });

    it('follows a daily rhythm in the reporting zone: busy evenings, quiet nights', () => {
      const perLocalHour = new Array<number>(24).fill(0);
      for (const e of events) perLocalHour[new Date(e.timeMs + SHANGHAI_OFFSET).getUTCHours()]!++;
      expect(perLocalHour[20]!).toBeGreaterThan(perLocalHour[3]! * 8);
      expect(perLocalHour[12]!).toBeGreaterThan(perLocalHour[4]! * 8);
    });

    it('is skewed: the busiest tenth of users makes a large share of events', () => {
      const perUser = new Map<string, number>();
      for (const e of events) perUser.set(e.userId, (perUser.get(e.userId) ?? 0) + 1);
      const counts = [...perUser.values()].sort((x, y) => y - x);
      const top = counts.slice(0, Math.ceil(counts.length / 10)).reduce((s, n) => s + n, 0);
      expect(top / events.length).toBeGreaterThan(0.3);
    });

    it('has banking behaviour: loan and fund page views, check-ins, finished and abandoned transfers', () => {
      const names = new Set(events.map((e) => e.name));
      for (const n of ['login', 'page_view', 'checkin', 'transfer_started', 'transfer_done', 'payment', 'register'])
        expect(names).toContain(n);
      const pages = new Set(events.filter((e) => e.name === 'page_view').map((e) => e.props.page));
      expect(pages).toContain('loan_detail');
      expect(pages).toContain('fund_detail');
      const started = new Set(events.filter((e) => e.name === 'transfer_started').map((e) => e.props.flow_id));
      const done = new Set(events.filter((e) => e.name === 'transfer_done').map((e) => e.props.flow_id));
      const abandoned = [...started].filter((f) => !done.has(f));
      expect(abandoned.length).toBeGreaterThan(started.size * 0.1);
      expect(abandoned.length).toBeLessThan(started.size * 0.35);
      expect(events.filter((x) => x.name === 'transfer_done' && !(x.value > 0))).toEqual([]);
    });

    it('credits salaries between 09:00 and 10:00 local time', () => {
      const salaries = events.filter((e) => e.name === 'salary_credited');
      expect(salaries.length).toBeGreaterThan(0);
      expect([...new Set(salaries.map((e) => new Date(e.timeMs + SHANGHAI_OFFSET).getUTCHours()))]).toEqual([9]);
    });

    it('registers new users, some referred, some from one device many times', () => {
      const regs = events.filter((e) => e.name === 'register');
      expect(regs.some((e) => typeof e.props.referrer === 'string')).toBe(true);
      const perDevice = new Map<string, number>();
      for (const e of regs) perDevice.set(e.deviceId, (perDevice.get(e.deviceId) ?? 0) + 1);
      expect(Math.max(...perDevice.values())).toBeGreaterThanOrEqual(2);
    });

    it('qualifies about half the referred users for the referral reward, 2 h to 3 days after signing up', () => {
      // Six days, so every sign-up of the first three has had its three days to qualify.
      const week = untilArrival(new TrafficGenerator({ ...base, seed: 11, ratePerSec: 0.05, newUserRate: 0.1 }), START + 6 * 24 * HOUR).map((g) => g.event);
      const regs = new Map<string, (typeof week)[number]>();
      for (const e of week) if (e.name === 'register' && !regs.has(e.userId)) regs.set(e.userId, e);
      const qualified = week.filter((e) => e.name === 'referral_qualified');
      for (const q of qualified) {
        const reg = regs.get(q.userId);
        expect(reg?.props.referrer).toBe(q.props.referrer);
        expect(q.timeMs - reg!.timeMs).toBeGreaterThanOrEqual(2 * HOUR);
        expect(q.timeMs - reg!.timeMs).toBeLessThan(72 * HOUR);
      }
      const due = [...regs.values()].filter((r) => r.props.referrer !== undefined && r.timeMs < START + 3 * 24 * HOUR - HOUR);
      const done = new Set(qualified.map((q) => q.userId));
      const share = due.filter((r) => done.has(r.userId)).length / due.length;
      expect(due.length).toBeGreaterThan(40);
      expect(share).toBeGreaterThan(0.3);
      expect(share).toBeLessThan(0.7);
    });

    it('repeats a few deliveries with the same event id, and delivers a few late', () => {
      const seen = new Map<string, number>();
      for (const e of events) seen.set(e.eventId, (seen.get(e.eventId) ?? 0) + 1);
      const dups = [...seen.values()].filter((n) => n > 1).length;
      expect(dups).toBeGreaterThan(0);
      expect(dups).toBeLessThan(events.length * 0.01);
      const late = day.filter((g) => g.arrivalMs - g.event.timeMs >= 60_000).length;
      expect(late).toBeGreaterThan(0);
      expect(late).toBeLessThan(day.length * 0.02);
    });

    it('uses user zones mostly equal to the reporting zone, and known channels', () => {
      const zones = events.map((e) => e.tz);
      expect(zones.filter((z) => z === 'Asia/Shanghai').length / zones.length).toBeGreaterThan(0.7);
      expect([...new Set(events.map((e) => e.channel))].sort()).toEqual(['app', 'mini_program', 'web', 'wechat']);
    });
  });

  describe('interestShare (the benchmark sets the playbook touch rate with it)', () => {
    const pageViews = (events: GeneratedEvent[], page: string) => events.filter((g) => g.event.name === 'page_view' && g.event.props.page === page).length;
    const daily = (interestShare?: number) => untilArrival(new TrafficGenerator({ ...base, seed: 7, ...(interestShare !== undefined ? { interestShare } : {}) }), START + 24 * HOUR);

    it('is 0.15 by default: the same traffic as before it existed', () => {
      expect(take(new TrafficGenerator({ ...base, seed: 3, interestShare: 0.15 }), 2_000)).toEqual(take(new TrafficGenerator({ ...base, seed: 3 }), 2_000));
    });

    it('sets how many sessions view loan and fund pages, and keeps the requested event rate', () => {
      const often = daily(0.15);
      const seldom = daily(0.05);
      for (const page of ['loan_detail', 'fund_detail']) {
        const ratio = pageViews(seldom, page) / pageViews(often, page);
        expect(ratio).toBeGreaterThan(0.2);
        expect(ratio).toBeLessThan(0.5);
      }
      // Fewer events per session: more sessions, so the rate of events stays as asked.
      const expected = base.ratePerSec * 86_400;
      for (const d of [often, seldom]) {
        expect(d.length).toBeGreaterThan(expected * 0.85);
        expect(d.length).toBeLessThan(expected * 1.2);
      }
    });

    it('refuses a share outside 0..1', () => {
      expect(() => new TrafficGenerator({ ...base, seed: 1, interestShare: 1.5 })).toThrow(/interestShare/);
    });
  });
});
