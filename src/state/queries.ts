import type { Redis } from 'ioredis';
import { dayNumber, formatDay, isoWeekStart, monthIndex, monthRange } from '../time/calendar.js';
import { GAP_BUCKETS, type ActivityWindow, type GapBucket } from './activity.js';
import { CounterHash } from './decide.js';
import { counterWithin, windowSum } from './windows.js';
import { exactValues } from './breakdown.js';
import { laneKeys, lanesKey, type LaneKeys } from './keys.js';
import { STAGES, stageAt, type Stage } from './lifecycle.js';
import type { StateSpec } from './spec.js';
import { decodeUserState, type UserState } from './user-state.js';

export interface ActiveAnswer {
  metric: string;
  window: ActivityWindow;
  day: string;
  from: string;
  to: string;
  count: number;
  /** Whether every number in the answer is exact (a HyperLogLog breakdown is not). */
  exact: boolean;
  /** With `by`: the breakdown's name and the count per value. */
  by?: string;
  breakdown?: Record<string, number>;
}

/**
 * The read side over all lanes of a topic. Counts live per lane (so each lane's commit is one
 * slot on a cluster); an answer sums the lanes with one pipelined round trip.
 */
export class StateQueries {
  constructor(
    private readonly redis: Redis,
    private readonly namespace: string,
    private readonly topic: string,
    private readonly spec: StateSpec,
  ) {}

  async lanes(): Promise<number[]> {
    const members = await this.redis.smembers(lanesKey(this.namespace, this.topic));
    return members.map(Number).sort((a, b) => a - b);
  }

  /**
   * DAU/WAU/MAU (the 1/7/30 days ending on `day`), ISO week or calendar month of `day`, and with
   * `by` the count per value of that breakdown.
   */
  async active(metric: string, window: ActivityWindow, day: number, by?: string): Promise<ActiveAnswer> {
    const { period, from, to } = windowPeriod(window, day);
    const lanes = await this.lanes();
    const count = await this.sumField(CounterHash.activity(metric, window), String(period), lanes);
    const answer: ActiveAnswer = { metric, window, day: formatDay(day), from: formatDay(from), to: formatDay(to), count, exact: true };
    if (by === undefined) return answer;
    const b = this.spec.breakdowns.find((x) => x.name === by);
    if (b === undefined) throw new Error(`unknown breakdown "${by}"`);
    answer.by = by;
    if (b.values !== null) {
      answer.breakdown = await this.exactBreakdown(metric, by, window, period, exactValues(b), lanes);
    } else {
      answer.breakdown = await this.hllBreakdown(metric, by, from, to, lanes);
      answer.exact = false;
    }
    return answer;
  }

  private async exactBreakdown(metric: string, by: string, window: ActivityWindow, period: number, values: string[], lanes: number[]): Promise<Record<string, number>> {
    const pipeline = this.redis.pipeline();
    const fields = values.map((v) => `${period}|${v}`);
    for (const p of lanes) pipeline.hmget(this.keys(p).hash(CounterHash.breakdown(metric, by, window)), ...fields);
    const out: Record<string, number> = Object.fromEntries(values.map((v) => [v, 0]));
    for (const [err, row] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      (row as (string | null)[]).forEach((n, i) => {
        if (n != null) out[values[i] as string] = (out[values[i] as string] ?? 0) + Number(n);
      });
    }
    return out;
  }

  /**
   * A wide breakdown: per value, PFCOUNT over the union of its daily HyperLogLogs in every lane
   * over the window's days. (Keys of several lanes in one PFCOUNT: fine on one Redis; on a
   * cluster this would need a PFMERGE per slot first.)
   */
  private async hllBreakdown(metric: string, by: string, from: number, to: number, lanes: number[]): Promise<Record<string, number>> {
    const members = this.redis.pipeline();
    for (const p of lanes) members.smembers(this.keys(p).hash(CounterHash.hllValues(metric, by)));
    const values = new Set<string>();
    for (const [err, list] of (await members.exec()) ?? []) {
      if (err) throw err;
      for (const v of list as string[]) values.add(v);
    }
    const sorted = [...values].sort();
    const counts = this.redis.pipeline();
    for (const v of sorted) {
      const keys: string[] = [];
      for (const p of lanes) for (let d = from; d <= to; d++) keys.push(this.keys(p).hash(CounterHash.hll(metric, by, d, v)));
      counts.pfcount(keys[0] as string, ...keys.slice(1));
    }
    const out: Record<string, number> = {};
    ((await counts.exec()) ?? []).forEach(([err, n], i) => {
      if (err) throw err;
      out[sorted[i] as string] = Number(n);
    });
    return out;
  }

  async newUsers(day: number): Promise<number> {
    return this.sumField(CounterHash.newUsers, String(day), await this.lanes());
  }

  /** Users per recorded lifecycle stage, over all lanes. */
  async stageCounts(): Promise<Record<Stage, number>> {
    const out = Object.fromEntries(STAGES.map((s) => [s, 0])) as Record<Stage, number>;
    for (const [stage, n] of await this.hashTotals(CounterHash.stages)) if (stage in out) out[stage as Stage] += n;
    return out;
  }

  /** The days-between-visits histogram of `metric` for visits on `day`. */
  async visitGaps(metric: string, day: number): Promise<Record<GapBucket, number>> {
    // Every bucket, zeros included, in order: dashboards and the CLI show a stable shape.
    const out = Object.fromEntries(GAP_BUCKETS.map((b) => [b, 0])) as Record<GapBucket, number>;
    const prefix = `${day}:`;
    for (const [field, n] of await this.hashTotals(CounterHash.gaps(metric))) {
      const bucket = field.slice(prefix.length) as GapBucket;
      if (field.startsWith(prefix) && bucket in out) out[bucket] += n;
    }
    return out;
  }

  /**
   * A lane counter hash summed over every lane, field by field (counts are kept per lane so
   * each commit stays in one slot; every whole-topic answer adds them up here).
   */
  async hashTotals(suffix: string): Promise<Map<string, number>> {
    const lanes = await this.lanes();
    const pipeline = this.redis.pipeline();
    for (const p of lanes) pipeline.hgetall(this.keys(p).hash(suffix));
    const totals = new Map<string, number>();
    for (const [err, v] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      for (const [field, n] of Object.entries(v as Record<string, string>)) totals.set(field, (totals.get(field) ?? 0) + Number(n));
    }
    return totals;
  }

  /** The raw state of a user, looked up in every lane (the partitioner is the producer's). */
  async userState(userId: string): Promise<UserState | null> {
    const lanes = await this.lanes();
    if (lanes.length === 0) return null;
    const pipeline = this.redis.pipeline();
    for (const p of lanes) pipeline.get(laneKeys(this.namespace, this.topic, p).user(userId));
    let best: UserState | null = null;
    for (const [err, v] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      if (typeof v !== 'string') continue;
      const s = decodeUserState(v);
      // After a change of partition count a user can have state in two lanes; the newest wins.
      if (best === null || s.lastSeen > best.lastSeen) best = s;
    }
    return best;
  }

  /** The user view of the ops API (DESIGN §2.3), evaluated at `now`. */
  async user(userId: string, now: number): Promise<UserView | null> {
    const s = await this.userState(userId);
    return s === null ? null : userView(userId, s, now, this.spec);
  }

  private keys(partition: number): LaneKeys {
    return laneKeys(this.namespace, this.topic, partition);
  }

  private async sumField(suffix: string, field: string, lanes: number[]): Promise<number> {
    const pipeline = this.redis.pipeline();
    for (const p of lanes) pipeline.hget(this.keys(p).hash(suffix), field);
    let total = 0;
    for (const [err, v] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      total += v == null ? 0 : Number(v);
    }
    return total;
  }
}

/** The counter period of a window ending on (or containing) `day`, and the days it spans. */
export function windowPeriod(window: ActivityWindow, day: number): { period: number; from: number; to: number } {
  if (window === 'wau') return { period: day, from: day - 6, to: day };
  if (window === 'mau') return { period: day, from: day - 29, to: day };
  if (window === 'week') {
    const monday = isoWeekStart(day);
    return { period: monday, from: monday, to: monday + 6 };
  }
  if (window === 'month') {
    const month = monthIndex(day);
    return { period: month, ...monthRange(month) };
  }
  return { period: day, from: day, to: day };
}

export interface UserView {
  userId: string;
  firstSeen: string;
  lastSeen: string;
  stage: Stage;
  stageSince: string;
  tz: string;
  traits: Record<string, string>;
  activeDays: Record<string, string[]>;
  streaks: Record<string, { current: number; best: number; lastDay: string }>;
  counters: Record<string, { count: number; within: string; times: string[] }>;
  sums: Record<string, number>;
  /** Per journey the user entered (latest entry): DESIGN §2.3 "what the user is in, last touch per journey". */
  journeys: Record<string, JourneyView>;
}

export interface JourneyView {
  enteredAt: string;
  /** `variant` (treated), `holdout` or `global_holdout`; `variant` names the A/B variant when treated. */
  group: string;
  variant: string;
  /** In the journey now: entered, not exited, not converted. */
  active: boolean;
  exitedAt?: string;
  convertedAt?: string;
  lastTouch?: { at: string; channel: string; step: string };
  /** Touches decided with a send time still ahead, and when. */
  pending: string[];
  /** The user's next timer in this journey since entering it (a later step's delay, or a new absence or inactivity deadline). */
  nextDue?: string;
}

/** Pure: what the API shows of a state at `now`. Streaks broken before yesterday show 0. */
export function userView(userId: string, s: UserState, now: number, spec: StateSpec): UserView {
  const stage = stageAt(s, now, spec.lifecycle);
  const iso = (ms: number): string => new Date(ms).toISOString();
  const streaks: UserView['streaks'] = {};
  for (const [name, st] of Object.entries(s.streaks)) {
    const today = dayNumber(now, s.tz !== '' ? s.tz : spec.reportingTimeZone);
    streaks[name] = { current: st.last >= today - 1 ? st.current : 0, best: st.best, lastDay: formatDay(st.last) };
  }
  const counters: UserView['counters'] = {};
  for (const c of spec.counters) {
    const times = s.counters[c.name] ?? [];
    counters[c.name] = { count: counterWithin(times, now, c.withinMs), within: `${c.withinMs / 1000}s`, times: times.map(iso) };
  }
  const sums: Record<string, number> = {};
  for (const sum of spec.sums) sums[sum.name] = windowSum(s.sums[sum.name] ?? [], now, sum.windowMs, sum.bucketMs);
  return {
    userId,
    firstSeen: iso(s.firstSeen),
    lastSeen: iso(s.lastSeen),
    stage: stage.stage,
    stageSince: iso(stage.since),
    tz: s.tz,
    traits: s.traits,
    activeDays: Object.fromEntries(Object.entries(s.active).map(([m, days]) => [m, days.map(formatDay)])),
    streaks,
    counters,
    sums,
    journeys: journeyViews(s, iso),
  };
}

function journeyViews(s: UserState, iso: (ms: number) => string): Record<string, JourneyView> {
  const j = s.journeys;
  if (j === undefined) return {};
  const out: Record<string, JourneyView> = {};
  for (const [id, e] of Object.entries(j.entries)) {
    const v: JourneyView = {
      enteredAt: iso(e.at),
      group: e.group,
      variant: e.variant,
      active: e.exitedAt === undefined && e.convertedAt === undefined,
      pending: e.pending.map((p) => iso(p.sendAt)),
    };
    if (e.exitedAt !== undefined) v.exitedAt = iso(e.exitedAt);
    if (e.convertedAt !== undefined) v.convertedAt = iso(e.convertedAt);
    if (e.lastTouch !== undefined) v.lastTouch = { at: iso(e.lastTouch.at), channel: e.lastTouch.channel, step: e.lastTouch.stepId };
    const due = j.waits.filter((w) => w.journeyId === id).reduce((m, w) => Math.min(m, w.dueAt), Infinity);
    if (due !== Infinity) v.nextDue = iso(due);
    out[id] = v;
  }
  return out;
}
