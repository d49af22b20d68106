import type { AppEvent } from '../contract/event.js';
import { dayNumber } from '../time/calendar.js';
import { addActiveDay, gapBucket, windowIncrements, type ActivityWindow } from './activity.js';
import { breakdownKey, breakdownValue, markHllSeen } from './breakdown.js';
import { nextTransitionAt, stageAt, type Stage } from './lifecycle.js';
import { matches, STATE_BOUNDS, type ActivityMetricSpec, type StateSpec } from './spec.js';
import type { RulesSpec } from '../rules/rules-spec.js';
import type { OutboxEntry } from '../touches/outbox-entry.js';
import { DeviceSignupView, recordSignup, type DeviceSignupReads, type NewSignup } from './device-signups.js';
import { factsOf, recordActiveHour, runJourneys, type JourneyEffects } from './journey-step.js';
import { newUserState, type UserState } from './user-state.js';
import { recentIdKey, seenRecently } from './recent-ids.js';

/**
 * The pure state step: events and timers in, new user states and counter increments out.
 * No I/O, no clock: `now` is an argument. The commit step writes the result atomically.
 */

/** Counter increments of one lane: hash name (a key suffix) -> field -> delta. */
export type CounterDeltas = Map<string, Map<string, number>>;

export interface Transition {
  userId: string;
  from: Stage | null;
  to: Stage;
  at: number;
}

export interface StepStats {
  applied: number;
  duplicates: number;
  late: number;
  clamped: number;
  timersFired: number;
}

/** Users to add to one HyperLogLog: (metric, breakdown, reporting day, value). */
export interface HllAdd {
  metric: string;
  breakdown: string;
  day: number;
  value: string;
  maxValues: number;
  users: Set<string>;
}

export interface StepResult {
  /** States that changed, by user id. */
  states: Map<string, UserState>;
  counters: CounterDeltas;
  /** HyperLogLog adds of the wide breakdowns, by a key naming (metric, breakdown, day, value). */
  hll: Map<string, HllAdd>;
  /** Touches decided, as outbox entries (touch id, job JSON): committed with the state. */
  outbox: OutboxEntry[];
  /** Sign-ups recorded in users' states, for their device sets (written before the commit). */
  signups: NewSignup[];
  /** Next timer due time per user; null removes the user's timer. */
  timers: Map<string, number | null>;
  transitions: Transition[];
  /** The lane's stream time after the batch (highest accepted event time). */
  streamTime: number;
  stats: StepStats;
}

/** Hash names (key suffixes) of the lane counters; `keys.ts` adds the lane's prefix. */
export const CounterHash = {
  activity: (metric: string, window: string) => `a:${metric}:${window}`,
  newUsers: 'new',
  gaps: (metric: string) => `gap:${metric}`,
  stages: 'stages',
  /** Exact breakdown counts of one window; field = `${period}|${value}`. */
  breakdown: (metric: string, breakdown: string, window: string) => `b:${metric}:${breakdown}:${window}`,
  /** One day's HyperLogLog of a wide breakdown value (a string key, not a hash). */
  hll: (metric: string, breakdown: string, day: number, value: string) => `h:${metric}:${breakdown}:${day}:${value}`,
  /** The values a wide breakdown has seen in the lane (a set, capped at maxValues). */
  hllValues: (metric: string, breakdown: string) => `hv:${metric}:${breakdown}`,
} as const;

/**
 * Hash names of a metric's activity windows and gaps, built once per metric: a name built
 * per increment (up to ~40 per new active day) was a fresh concatenated string that every Map
 * lookup then had to flatten and hash (bump() was ~6% of the step's CPU).
 */
interface MetricHashes {
  windows: Record<ActivityWindow, string>;
  gaps: string;
}
// Per metric of a compiled spec (the spec's own objects, so nothing outlives the spec).
const METRIC_HASHES = new WeakMap<ActivityMetricSpec, MetricHashes>();

function hashesOf(metric: ActivityMetricSpec): MetricHashes {
  let h = METRIC_HASHES.get(metric);
  if (h === undefined) {
    const name = metric.name;
    h = {
      windows: {
        dau: CounterHash.activity(name, 'dau'),
        wau: CounterHash.activity(name, 'wau'),
        mau: CounterHash.activity(name, 'mau'),
        week: CounterHash.activity(name, 'week'),
        month: CounterHash.activity(name, 'month'),
      },
      gaps: CounterHash.gaps(name),
    };
    METRIC_HASHES.set(metric, h);
  }
  return h;
}

function bump(counters: CounterDeltas, hash: string, field: string | number, delta = 1): void {
  let h = counters.get(hash);
  if (h === undefined) counters.set(hash, (h = new Map()));
  const f = String(field);
  h.set(f, (h.get(f) ?? 0) + delta);
}

/**
 * Applies a lane's batch of events (in offset order) to the users' states.
 * `states` holds the loaded state of every user in the batch (undefined = never seen);
 * `devices` the device sign-up sets planDeviceSignups asked for (device-signups.ts).
 *
 * `owned`: the caller gives the loaded states away (freshly decoded, used by nobody else), so
 * the step changes them in place instead of copying each one first. The copies, of the user
 * state and of its journey state, were the largest single cost of the journey step (a fifth
 * of its CPU, and garbage for every event). A caller that may run the step again on the same
 * states (poison isolation) must not pass true for those runs: see LaneSteps.decideBatch.
 */
export function applyEvents(
  events: readonly AppEvent[],
  loaded: ReadonlyMap<string, UserState | undefined>,
  streamTime: number,
  now: number,
  spec: StateSpec,
  devices?: DeviceSignupReads,
  owned = false,
): StepResult {
  const result = emptyResult(streamTime);
  const rules = journeysOf(spec);
  const view = devices === undefined ? undefined : new DeviceSignupView(devices);
  for (const e of events) {
    const mine = result.states.get(e.userId);
    const state = mine ?? loaded.get(e.userId);
    const idKey = recentIdKey(e.eventId);
    if (state !== undefined && seenRecently(state.recentIds, e.eventId, idKey)) {
      result.stats.duplicates++;
      continue;
    }
    if (e.timeMs < result.streamTime - spec.allowedLatenessMs) {
      result.stats.late++;
      continue;
    }
    let t = e.timeMs;
    if (t > now + spec.maxFutureSkewMs) {
      t = now;
      result.stats.clamped++;
    } else if (t > result.streamTime) {
      // Only trusted times move stream time: one device with a clock a year ahead, clamped to
      // the wall clock, must not make the rest of a replayed partition late.
      result.streamTime = t;
    }
    const before = rules !== null && state !== undefined ? factsOf(state) : null;
    // The first event of a user in the batch copies the loaded state (unless it was given
    // away); later ones update the copy.
    const next = applyOne(mine ?? (state === undefined || owned ? state : structuredCloneState(state)), e, idKey, t, spec, result, view);
    result.states.set(e.userId, next);
    if (rules !== null) {
      // The histogram and the journey state are this step's own once an earlier event of the
      // batch replaced them.
      const mutable = owned || mine !== undefined;
      recordActiveHour(next, t, spec.reportingTimeZone, mutable);
      const applied = t === e.timeMs ? e : { ...e, timeMs: t };
      mergeJourneys(result, e.userId, runJourneys(rules, e.userId, next, before, applied, now, spec, view, mutable));
    }
    result.stats.applied++;
  }
  return result;
}

/** Applies one event to `prior`, which the caller owns (it is updated in place). */
function applyOne(prior: UserState | undefined, e: AppEvent, idKey: string, t: number, spec: StateSpec, out: StepResult, view?: DeviceSignupView): UserState {
  const s: UserState = prior ?? newUserState(t);
  const day = dayNumber(t, spec.reportingTimeZone);
  if (prior === undefined) {
    bump(out.counters, CounterHash.newUsers, day);
    bump(out.counters, CounterHash.stages, 'new');
    out.transitions.push({ userId: e.userId, from: null, to: 'new', at: t });
  } else {
    if (t - s.lastSeen >= spec.lifecycle.dormantAfterMs) s.reactivatedAt = t;
    if (t > s.lastSeen) s.lastSeen = t;
    if (t < s.firstSeen) s.firstSeen = t;
  }

  s.recentIds.push(idKey);
  if (s.recentIds.length > STATE_BOUNDS.recentEventIds) s.recentIds.splice(0, s.recentIds.length - STATE_BOUNDS.recentEventIds);
  if (e.tz !== '') s.tz = e.tz;
  if (spec.deviceSignups.length > 0) recordSignup(s, e, t, spec, view, out.signups);

  // Traits first: a breakdown by a trait counts the event under the value it sets.
  for (const key of spec.traitKeys) {
    const v = e.props[key];
    if (v === undefined) continue;
    if (!(key in s.traits) && Object.keys(s.traits).length >= STATE_BOUNDS.traits) continue;
    s.traits[key] = v.slice(0, STATE_BOUNDS.traitValueLength);
  }

  for (const metric of spec.metrics) {
    if (metric.events !== null && !metric.events.has(e.name)) continue;
    if (spec.breakdowns.length > 0) applyBreakdowns(s, e, metric.name, day, spec, out);
    const days = s.active[metric.name] ?? [];
    if (days.includes(day)) continue;
    const hashes = hashesOf(metric);
    for (const inc of windowIncrements(days, day)) bump(out.counters, hashes.windows[inc.window], inc.period);
    const newest = days.length > 0 ? (days[days.length - 1] as number) : undefined;
    if (newest !== undefined && day > newest) bump(out.counters, hashes.gaps, `${day}:${gapBucket(day - newest)}`);
    s.active[metric.name] = addActiveDay(days, day);
  }

  for (const c of spec.counters) {
    if (!matches(c.filter, e)) continue;
    s.counters[c.name] = insertBounded(s.counters[c.name] ?? [], t, Math.min(c.keep, STATE_BOUNDS.counterKeep));
  }

  for (const sum of spec.sums) {
    if (!matches(sum.filter, e)) continue;
    s.sums[sum.name] = addToBuckets(s.sums[sum.name] ?? [], t, e.value, sum.windowMs, sum.bucketMs);
  }

  if (spec.streaks.length > 0) {
    const userDay = dayNumber(t, s.tz !== '' ? s.tz : spec.reportingTimeZone);
    for (const st of spec.streaks) {
      if (!matches(st.filter, e)) continue;
      const cur = s.streaks[st.name];
      // Days are taken in arrival order: a late event for an earlier day does not join runs.
      if (cur === undefined || userDay > cur.last + 1) {
        s.streaks[st.name] = { last: userDay, current: 1, best: Math.max(1, cur?.best ?? 0) };
      } else if (userDay === cur.last + 1) {
        const current = cur.current + 1;
        s.streaks[st.name] = { last: userDay, current, best: Math.max(cur.best, current) };
      }
    }
  }

  recordStage(s, e.userId, s.lastSeen, spec, out);
  return s;
}

/**
 * Counts the event's user under each breakdown value: exactly (an active-day list per value,
 * the same window arithmetic as the totals) or into a per-day HyperLogLog.
 */
function applyBreakdowns(s: UserState, e: AppEvent, metric: string, day: number, spec: StateSpec, out: StepResult): void {
  for (const b of spec.breakdowns) {
    const value = breakdownValue(b, e, s.traits);
    const key = breakdownKey(metric, b.name, value);
    if (b.values !== null) {
      const active = (s.bActive ??= {});
      const days = active[key] ?? [];
      if (days.includes(day)) continue;
      for (const inc of windowIncrements(days, day)) bump(out.counters, CounterHash.breakdown(metric, b.name, inc.window), `${inc.period}|${value}`);
      active[key] = addActiveDay(days, day);
    } else if (markHllSeen((s.hllSeen ??= {}), key, day)) {
      const hllKey = `${key}/${day}`;
      let add = out.hll.get(hllKey);
      if (add === undefined) out.hll.set(hllKey, (add = { metric, breakdown: b.name, day, value, maxValues: b.maxValues, users: new Set() }));
      add.users.add(e.userId);
    }
  }
}

/**
 * Re-evaluates the users whose timers are due at `now` (the sweep feeds them in): records a
 * stage change, if any, and schedules the next timer.
 */
export function applyTimers(
  userIds: readonly string[],
  loaded: ReadonlyMap<string, UserState | undefined>,
  now: number,
  spec: StateSpec,
): StepResult {
  const result = emptyResult(0);
  const rules = journeysOf(spec);
  for (const userId of userIds) {
    const prior = loaded.get(userId);
    if (prior === undefined) {
      result.timers.set(userId, null);
      continue;
    }
    const s = structuredCloneState(prior);
    result.stats.timersFired++;
    const before = rules !== null ? factsOf(s) : null;
    recordStage(s, userId, now, spec, result);
    // Journey timers (absence deadlines, inactivity, later steps) share the user's one timer.
    if (rules !== null) mergeJourneys(result, userId, runJourneys(rules, userId, s, before, null, now, spec));
    result.states.set(userId, s);
  }
  return result;
}

/** Records the stage at `t` if it changed, and sets the user's next timer. */
function recordStage(s: UserState, userId: string, t: number, spec: StateSpec, out: StepResult): void {
  const at = stageAt(s, t, spec.lifecycle);
  if (at.stage !== s.stage) {
    out.transitions.push({ userId, from: s.stage, to: at.stage, at: at.since });
    bump(out.counters, CounterHash.stages, s.stage, -1);
    bump(out.counters, CounterHash.stages, at.stage, 1);
    s.stage = at.stage;
    s.stageSince = at.since;
  }
  out.timers.set(userId, nextTransitionAt(s, t, spec.lifecycle));
}

/** The compiled journeys, or null when none is configured (the step then skips the rules). */
function journeysOf(spec: StateSpec): RulesSpec | null {
  return spec.rules !== undefined && spec.rules.journeys.length > 0 ? spec.rules : null;
}

/** Adds a journey decision's outbox entries and counters; the user's timer is the earlier one. */
function mergeJourneys(out: StepResult, userId: string, j: JourneyEffects): void {
  // Indexed loops: most events bring the shared empty lists, on which for-of made an iterator.
  for (let i = 0; i < j.outbox.length; i++) out.outbox.push(j.outbox[i]!);
  for (let i = 0; i < j.counters.length; i++) {
    const [hash, field, delta] = j.counters[i]!;
    bump(out.counters, hash, field, delta);
  }
  if (j.nextDueAt !== null) {
    const lifecycle = out.timers.get(userId) ?? null;
    out.timers.set(userId, lifecycle === null ? j.nextDueAt : Math.min(lifecycle, j.nextDueAt));
  }
}

function emptyResult(streamTime: number): StepResult {
  return {
    states: new Map(),
    counters: new Map(),
    hll: new Map(),
    outbox: [],
    signups: [],
    timers: new Map(),
    transitions: [],
    streamTime,
    stats: { applied: 0, duplicates: 0, late: 0, clamped: 0, timersFired: 0 },
  };
}

function insertBounded(times: readonly number[], t: number, keep: number): number[] {
  const out = [...times];
  let i = out.length;
  while (i > 0 && (out[i - 1] as number) > t) i--;
  out.splice(i, 0, t);
  return out.length > keep ? out.slice(out.length - keep) : out;
}

function addToBuckets(buckets: ReadonlyArray<[number, number]>, t: number, value: number, windowMs: number, bucketMs: number): Array<[number, number]> {
  const start = Math.floor(t / bucketMs) * bucketMs;
  const out = buckets.map(([b, v]) => [b, v] as [number, number]);
  const hit = out.find(([b]) => b === start);
  if (hit) hit[1] += value;
  else {
    out.push([start, value]);
    out.sort((a, b) => a[0] - b[0]);
  }
  const newest = (out[out.length - 1] as [number, number])[0];
  const keepFrom = newest - windowMs;
  const trimmed = out.filter(([b]) => b > keepFrom);
  return trimmed.length > STATE_BOUNDS.sumBuckets ? trimmed.slice(trimmed.length - STATE_BOUNDS.sumBuckets) : trimmed;
}

/** Copies the parts a step mutates; the loaded object stays as it was (callers may compare). */
function structuredCloneState(s: UserState): UserState {
  return {
    ...s,
    active: { ...s.active },
    counters: { ...s.counters },
    sums: { ...s.sums },
    streaks: { ...s.streaks },
    traits: { ...s.traits },
    recentIds: [...s.recentIds],
    ...(s.bActive !== undefined ? { bActive: { ...s.bActive } } : {}),
    ...(s.hllSeen !== undefined ? { hllSeen: { ...s.hllSeen } } : {}),
  };
}
