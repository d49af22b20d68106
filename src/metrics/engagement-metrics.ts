import { Gauge, type Registry } from 'prom-client';
import { BoundedLabel } from './bounded-label.js';

/** The windows reported for "today": rolling DAU/WAU/MAU, the ISO week and calendar month so far. */
export const ENGAGEMENT_WINDOWS = ['dau', 'wau', 'mau', 'week', 'month'] as const;
export type EngagementWindow = (typeof ENGAGEMENT_WINDOWS)[number];

/** What the engagement gauges read; `StateQueries` is one (metrics/ imports no layer). */
export interface EngagementSource {
  active(metric: string, window: EngagementWindow, day: number): Promise<{ count: number }>;
  newUsers(day: number): Promise<number>;
  stageCounts(): Promise<Record<string, number>>;
  visitGaps(metric: string, day: number): Promise<Record<string, number>>;
}

export interface ActivityReading {
  metric: string;
  windows: Record<EngagementWindow, number>;
  /** Today's visitors by days since their previous visit (bucket -> users). */
  gaps: Record<string, number>;
}

export interface EngagementReading {
  activity: ActivityReading[];
  newUsers: number;
  /** Users per recorded lifecycle stage. */
  stages: Record<string, number>;
}

/**
 * Everything the engagement gauges show, for `day` (today in the reporting zone), read in one
 * go: a handful of pipelined round trips per activity metric, whatever the traffic.
 */
export async function readEngagement(source: EngagementSource, metrics: readonly string[], day: number): Promise<EngagementReading> {
  const activity = Promise.all(
    metrics.map(async (metric): Promise<ActivityReading> => {
      const [counts, gaps] = await Promise.all([
        Promise.all(ENGAGEMENT_WINDOWS.map((w) => source.active(metric, w, day))),
        source.visitGaps(metric, day),
      ]);
      const windows = Object.fromEntries(ENGAGEMENT_WINDOWS.map((w, i) => [w, counts[i]?.count ?? 0])) as Record<EngagementWindow, number>;
      return { metric, windows, gaps };
    }),
  );
  const [a, newUsers, stages] = await Promise.all([activity, source.newUsers(day), source.stageCounts()]);
  return { activity: a, newUsers, stages };
}

/**
 * Engagement gauges: DAU/WAU/MAU per activity metric (FAU is the `financial` metric's DAU),
 * stickiness, new users, lifecycle stages and the days-between-visits histogram. They are read
 * from the exactly-once counters in Redis by a poller, so they are cluster-wide: every instance
 * reports the same numbers (aggregate with `max`, never `sum`).
 */
export class EngagementMetrics {
  readonly activeUsers: Gauge<'metric' | 'window'>;
  readonly stickiness: Gauge<'metric'>;
  readonly newUsers: Gauge;
  readonly stageUsers: Gauge<'stage'>;
  readonly visitGaps: Gauge<'metric' | 'gap'>;
  // Stages and gap buckets come back as hash fields; bounded in case a hash holds strays.
  private readonly stageLabel = new BoundedLabel(16);
  private readonly gapLabel = new BoundedLabel(16);

  constructor(registry: Registry) {
    const registers = [registry];
    this.activeUsers = new Gauge({
      name: 'nudge_active_users',
      help: 'Distinct active users of an activity metric for today in the reporting zone: window dau, wau, mau (1/7/30 days ending today), week (ISO week so far), month (calendar month so far).',
      labelNames: ['metric', 'window'],
      registers,
    });
    this.stickiness = new Gauge({
      name: 'nudge_stickiness_ratio',
      help: 'DAU / MAU of an activity metric for today (0 when MAU is 0).',
      labelNames: ['metric'],
      registers,
    });
    this.newUsers = new Gauge({ name: 'nudge_new_users_today', help: 'Users first seen today in the reporting zone.', registers });
    this.stageUsers = new Gauge({ name: 'nudge_lifecycle_users', help: 'Users per recorded lifecycle stage.', labelNames: ['stage'], registers });
    this.visitGaps = new Gauge({
      name: 'nudge_visit_gap_users',
      help: 'Users active today by days since their previous active day (gap: 1, 2, 3, 4-7, 8-14, 15-30, 31+).',
      labelNames: ['metric', 'gap'],
      registers,
    });
  }

  /**
   * Replaces every series at once (synchronously, so a scrape never sees half a reading).
   * `inc` after the reset, not `set`: values folded into `other` add up.
   */
  apply(r: EngagementReading): void {
    this.activeUsers.reset();
    this.stickiness.reset();
    this.visitGaps.reset();
    this.stageUsers.reset();
    for (const a of r.activity) {
      for (const w of ENGAGEMENT_WINDOWS) this.activeUsers.set({ metric: a.metric, window: w }, a.windows[w]);
      this.stickiness.set({ metric: a.metric }, a.windows.mau > 0 ? a.windows.dau / a.windows.mau : 0);
      for (const [gap, n] of Object.entries(a.gaps)) this.visitGaps.inc({ metric: a.metric, gap: this.gapLabel.value(gap) }, n);
    }
    this.newUsers.set(r.newUsers);
    for (const [stage, n] of Object.entries(r.stages)) this.stageUsers.inc({ stage: this.stageLabel.value(stage) }, n);
  }
}
