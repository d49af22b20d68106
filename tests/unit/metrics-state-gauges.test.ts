import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { BoundedLabel } from '../../src/metrics/bounded-label.js';
import { EngagementMetrics, readEngagement, type EngagementSource } from '../../src/metrics/engagement-metrics.js';
import { JourneyMetrics } from '../../src/metrics/journey-metrics.js';
import { readJourneys, type JourneyCounts } from '../../src/metrics/journey-reading.js';
import { pollEvery } from '../../src/metrics/poll-every.js';
import { StateGauges } from '../../src/metrics/state-gauges.js';

/** Prometheus text -> `name{labels}` -> value, for exact assertions. */
async function samples(registry: Registry): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await registry.metrics()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

const engagementSource: EngagementSource = {
  active: async (metric, window) => ({ count: (metric === 'active' ? 100 : 10) * { dau: 1, wau: 3, mau: 5, week: 2, month: 4 }[window] }),
  newUsers: async () => 7,
  stageCounts: async () => ({ new: 3, active: 90, dormant: 5, churned: 2, reactivated: 0 }),
  visitGaps: async () => ({ '1': 60, '2': 20, '31+': 1 }),
};

function counts(over: Partial<JourneyCounts> = {}): JourneyCounts {
  return {
    decisions: { send: 40, suppress: 9, holdout: 5 },
    reasons: { sent: 40, cap_channel: 6, min_gap: 3, holdout: 5 },
    skipped: { reentry_cooldown: 11 },
    cancelled: { exit: 2 },
    variants: { A: { users: 20, conversions: 6 }, B: { users: 24, conversions: 4 } },
    holdout: { users: 5, conversions: 1 },
    globalHoldout: { users: 0, conversions: 0 },
    lift: { absolute: { value: 0.027, low: -0.3, high: 0.35 } },
    ...over,
  };
}

describe('engagement gauges', () => {
  it('show DAU/WAU/MAU/week/month, stickiness, new users, stages and visit gaps per activity metric', async () => {
    const registry = new Registry();
    const m = new EngagementMetrics(registry);
    m.apply(await readEngagement(engagementSource, ['active', 'financial'], 20_000));
    const s = await samples(registry);
    expect(s.get('nudge_active_users{metric="active",window="dau"}')).toBe(100);
    expect(s.get('nudge_active_users{metric="active",window="mau"}')).toBe(500);
    expect(s.get('nudge_active_users{metric="financial",window="wau"}')).toBe(30);
    expect(s.get('nudge_active_users{metric="financial",window="month"}')).toBe(40);
    expect(s.get('nudge_stickiness_ratio{metric="active"}')).toBeCloseTo(0.2);
    expect(s.get('nudge_new_users_today')).toBe(7);
    expect(s.get('nudge_lifecycle_users{stage="dormant"}')).toBe(5);
    expect(s.get('nudge_visit_gap_users{metric="financial",gap="31+"}')).toBe(1);
  });

  it('report stickiness 0, not NaN, while MAU is 0', async () => {
    const registry = new Registry();
    const m = new EngagementMetrics(registry);
    m.apply(await readEngagement({ ...engagementSource, active: async () => ({ count: 0 }) }, ['active'], 1));
    expect((await samples(registry)).get('nudge_stickiness_ratio{metric="active"}')).toBe(0);
  });

  it('fold stray stage names past the bound into "other" and add them up', async () => {
    const registry = new Registry();
    const m = new EngagementMetrics(registry);
    const stages = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`s${i}`, 1]));
    m.apply(await readEngagement({ ...engagementSource, stageCounts: async () => stages }, [], 1));
    const s = await samples(registry);
    expect([...s.keys()].filter((k) => k.startsWith('nudge_lifecycle_users')).length).toBe(17);
    expect(s.get('nudge_lifecycle_users{stage="other"}')).toBe(4);
  });
});

describe('journey metrics', () => {
  const journeys = [
    { id: 'welcome', budget: null },
    { id: 'reward', budget: { total: 100, perDay: 20, costPerTouch: 3 } },
    { id: 'free', budget: { total: 100, perDay: null, costPerTouch: 0 } },
  ];
  const sources = {
    stats: async (id: string) => (id === 'welcome' ? counts() : counts({ lift: null, skipped: {} })),
    spent: async (id: string, day: number) => ({ total: id === 'reward' ? 99 : 0, today: day === 5 ? 18 : 0 }),
  };

  it('export triggered, entries, conversions, skips, decisions, reasons, cancellations and lift per journey', async () => {
    const registry = new Registry();
    new JourneyMetrics(registry).apply(await readJourneys(sources, journeys, 5));
    const s = await samples(registry);
    // 20 + 24 + 5 entered, 11 skipped.
    expect(s.get('nudge_journey_triggered_total{journey="welcome"}')).toBe(60);
    expect(s.get('nudge_journey_triggered_total{journey="reward"}')).toBe(49);
    expect(s.get('nudge_journey_entries_total{journey="welcome",group="variant",variant="B"}')).toBe(24);
    expect(s.get('nudge_journey_entries_total{journey="welcome",group="holdout",variant="none"}')).toBe(5);
    expect(s.get('nudge_journey_conversions_total{journey="welcome",group="variant",variant="A"}')).toBe(6);
    expect(s.get('nudge_journey_skips_total{journey="welcome",reason="reentry_cooldown"}')).toBe(11);
    expect(s.get('nudge_journey_decisions_total{journey="welcome",outcome="suppress"}')).toBe(9);
    expect(s.get('nudge_journey_decision_reasons_total{journey="welcome",reason="cap_channel"}')).toBe(6);
    expect(s.get('nudge_journey_cancellations_total{journey="welcome",reason="exit"}')).toBe(2);
    expect(s.get('nudge_journey_lift_ratio{journey="welcome",bound="low"}')).toBe(-0.3);
    expect(s.has('nudge_journey_lift_ratio{journey="reward",bound="value"}')).toBe(false);
  });

  it('export budget limit, spent and remaining for journeys whose touches cost something', async () => {
    const registry = new Registry();
    new JourneyMetrics(registry).apply(await readJourneys(sources, journeys, 5));
    const s = await samples(registry);
    expect(s.get('nudge_journey_budget_remaining{journey="reward",period="total"}')).toBe(1);
    expect(s.get('nudge_journey_budget_remaining{journey="reward",period="day"}')).toBe(2);
    expect(s.get('nudge_journey_budget_spent{journey="reward",period="day"}')).toBe(18);
    expect(s.get('nudge_journey_budget_limit{journey="reward",period="day"}')).toBe(20);
    expect(s.get('nudge_journey_budget_cost_per_touch{journey="reward"}')).toBe(3);
    // No budget, or touches that cost nothing: nothing is charged, so nothing to show.
    expect([...s.keys()].filter((k) => k.includes('budget') && (k.includes('"welcome"') || k.includes('"free"')))).toEqual([]);
  });

  it('replace the totals on each reading, so a wiped namespace reads as a counter reset', async () => {
    const registry = new Registry();
    const m = new JourneyMetrics(registry);
    m.apply(await readJourneys(sources, journeys.slice(0, 1), 0));
    m.apply(await readJourneys({ ...sources, stats: async () => counts({ decisions: { send: 1 }, reasons: {} }) }, journeys.slice(0, 1), 0));
    const s = await samples(registry);
    expect(s.get('nudge_journey_decisions_total{journey="welcome",outcome="send"}')).toBe(1);
    expect(s.has('nudge_journey_decisions_total{journey="welcome",outcome="suppress"}')).toBe(false);
  });
});

describe('BoundedLabel', () => {
  it('keeps the first values and folds the rest into other', () => {
    const l = new BoundedLabel(2);
    expect(['a', 'b', 'c', 'a', 'd'].map((v) => l.value(v))).toEqual(['a', 'b', 'other', 'a', 'other']);
  });
});

describe('pollEvery', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('polls at once, then each interval after the previous poll ends, never two at once', async () => {
    vi.useFakeTimers();
    let running = 0;
    let maxRunning = 0;
    const starts: number[] = [];
    const stop = pollEvery(1_000, async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      starts.push(Date.now());
      await new Promise((r) => setTimeout(r, 2_500));
      running--;
    }, () => {});
    const t0 = Date.now();
    await vi.advanceTimersByTimeAsync(10_000);
    stop();
    expect(maxRunning).toBe(1);
    expect(starts.map((t) => t - t0)).toEqual([0, 3_500, 7_000]);
  });

  it('reports a failed poll and carries on; nothing runs after stop', async () => {
    vi.useFakeTimers();
    const errors: unknown[] = [];
    let calls = 0;
    const stop = pollEvery(1_000, async () => {
      calls++;
      if (calls === 1) throw new Error('redis down');
    }, (e) => errors.push(e));
    await vi.advanceTimersByTimeAsync(2_500);
    expect(errors).toHaveLength(1);
    expect(calls).toBe(3);
    stop();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(calls).toBe(3);
  });
});

describe('StateGauges', () => {
  it('counts a failed read, keeps the last values, and records the last success', async () => {
    const registry = new Registry();
    let fail = false;
    const gauges = new StateGauges({
      registry,
      logger: silentLogger(),
      today: () => 5,
      activityMetrics: ['active'],
      journeys: [{ id: 'welcome', budget: null }],
      engagement: { ...engagementSource, newUsers: async () => (fail ? Promise.reject(new Error('down')) : 7) },
      journeySources: { stats: async () => counts(), spent: async () => ({ total: 0, today: 0 }) },
      intervalMs: 60_000,
    });
    await gauges.pollOnce();
    fail = true;
    await expect(gauges.pollOnce()).rejects.toThrow('down');
    const s = await samples(registry);
    expect(s.get('nudge_new_users_today')).toBe(7);
    expect(s.get('nudge_journey_triggered_total{journey="welcome"}')).toBe(60);
    expect(s.get('nudge_state_poll_last_success_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60);

    gauges.start();
    await vi.waitFor(async () => expect((await samples(registry)).get('nudge_state_poll_errors_total')).toBe(1));
    gauges.stop();
  });
});
