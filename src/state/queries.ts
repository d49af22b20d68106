import type { Redis } from 'ioredis';
import { dayNumber, formatDay, isoWeekStart, monthIndex, monthRange } from '../time/calendar.js';
import type { ActivityWindow } from './activity.js';
import { counterWithin, CounterHash, windowSum } from './decide.js';
import { laneKeys, lanesKey } from './keys.js';
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
  exact: boolean;
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

  /** DAU/WAU/MAU (the 1/7/30 days ending on `day`), ISO week or calendar month of `day`. */
  async active(metric: string, window: ActivityWindow, day: number): Promise<ActiveAnswer> {
    let period = day;
    let from = day;
    let to = day;
    if (window === 'wau') from = day - 6;
    else if (window === 'mau') from = day - 29;
    else if (window === 'week') {
      period = isoWeekStart(day);
      from = period;
      to = period + 6;
    } else if (window === 'month') {
      period = monthIndex(day);
      ({ from, to } = monthRange(period));
    }
    const lanes = await this.lanes();
    const pipeline = this.redis.pipeline();
    for (const p of lanes) pipeline.hget(laneKeys(this.namespace, this.topic, p).hash(CounterHash.activity(metric, window)), String(period));
    const results = (await pipeline.exec()) ?? [];
    let count = 0;
    for (const [err, v] of results) {
      if (err) throw err;
      count += v == null ? 0 : Number(v);
    }
    return { metric, window, day: formatDay(day), from: formatDay(from), to: formatDay(to), count, exact: true };
  }

  async newUsers(day: number): Promise<number> {
    return this.sumField(CounterHash.newUsers, String(day));
  }

  /** Users per recorded lifecycle stage, over all lanes. */
  async stageCounts(): Promise<Record<Stage, number>> {
    const out = Object.fromEntries(STAGES.map((s) => [s, 0])) as Record<Stage, number>;
    const lanes = await this.lanes();
    const pipeline = this.redis.pipeline();
    for (const p of lanes) pipeline.hgetall(laneKeys(this.namespace, this.topic, p).hash(CounterHash.stages));
    for (const [err, v] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      for (const [stage, n] of Object.entries(v as Record<string, string>)) if (stage in out) out[stage as Stage] += Number(n);
    }
    return out;
  }

  /** The days-between-visits histogram of `metric` for visits on `day`. */
  async visitGaps(metric: string, day: number): Promise<Record<string, number>> {
    const lanes = await this.lanes();
    const pipeline = this.redis.pipeline();
    for (const p of lanes) pipeline.hgetall(laneKeys(this.namespace, this.topic, p).hash(CounterHash.gaps(metric)));
    const out: Record<string, number> = {};
    const prefix = `${day}:`;
    for (const [err, v] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      for (const [field, n] of Object.entries(v as Record<string, string>)) {
        if (field.startsWith(prefix)) out[field.slice(prefix.length)] = (out[field.slice(prefix.length)] ?? 0) + Number(n);
      }
    }
    return out;
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

  private async sumField(suffix: string, field: string): Promise<number> {
    const lanes = await this.lanes();
    const pipeline = this.redis.pipeline();
    for (const p of lanes) pipeline.hget(laneKeys(this.namespace, this.topic, p).hash(suffix), field);
    let total = 0;
    for (const [err, v] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      total += v == null ? 0 : Number(v);
    }
    return total;
  }
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
  journeys: Record<string, unknown>;
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
    journeys: {},
  };
}
