import type { AppEvent } from '../contract/event.js';
import type { BudgetRemaining } from '../rules/policy-gate.js';
import type { RulesSpec } from '../rules/rules-spec.js';

/**
 * What the state step keeps, compiled once from the config. Pure data: the decide functions
 * take it as an argument, so tests build one by hand and the reference model reads the same
 * plain meaning from the config.
 */
export interface StateSpec {
  reportingTimeZone: string;
  /** Events further behind their lane's stream time are counted as late and change nothing. */
  allowedLatenessMs: number;
  /** Events further ahead of the wall clock are clamped to it (and counted). */
  maxFutureSkewMs: number;
  metrics: ActivityMetricSpec[];
  lifecycle: LifecycleSpec;
  counters: CounterSpec[];
  sums: SumSpec[];
  streaks: StreakSpec[];
  /** Event props copied into the user's traits when an event carries them (bounded). */
  traitKeys: string[];
  /** Splits of every metric's counts by channel or a trait (DESIGN §4). */
  breakdowns: BreakdownSpec[];
  /** Sign-ups per device across users (referral anti-abuse); usually empty. */
  deviceSignups: DeviceSignupSpec[];
  /** Journeys and the policy gate, compiled; absent or empty = no journeys. */
  rules?: RulesSpec;
  /**
   * What is left of the journeys' budgets as last read from the ledger, for the gate at decision
   * time; absent = nothing known (the gate assumes nothing spent; the send-time charge guards).
   */
  budgets?: { remaining(): ReadonlyMap<string, BudgetRemaining> | undefined };
}

/**
 * A split of the activity counts. Exact when `values` lists the values worth counting (the
 * rest is "other", a missing value "unknown"); HyperLogLog when it does not.
 */
export interface BreakdownSpec {
  name: string;
  source: { kind: 'channel' } | { kind: 'trait'; key: string };
  values: ReadonlySet<string> | null;
  /** HyperLogLog mode: distinct values kept per lane; further values count as "other". */
  maxValues: number;
}

export interface ActivityMetricSpec {
  name: string;
  /** Event names that count; null = any event. */
  events: ReadonlySet<string> | null;
}

export interface LifecycleSpec {
  /** A user is `new` this long after first seen. */
  newForMs: number;
  /** No activity this long: `dormant`. */
  dormantAfterMs: number;
  /** No activity this long: `churned`. */
  churnedAfterMs: number;
  /** After coming back from dormant or churned, `reactivated` this long, then `active`. */
  reactivatedForMs: number;
}

export interface EventFilter {
  /** Event names that match; empty = any. */
  names: ReadonlySet<string>;
  /** Props that must be equal. */
  props: Readonly<Record<string, string>>;
  /** Channel that must be equal, when set. */
  channel?: string;
}

/** "At least N matching events within W": exact, by keeping the last N timestamps. */
export interface CounterSpec {
  name: string;
  filter: EventFilter;
  keep: number;
  withinMs: number;
}

/** Sum of `value` of matching events over a window, in time buckets. */
export interface SumSpec {
  name: string;
  filter: EventFilter;
  windowMs: number;
  bucketMs: number;
}

/**
 * A user's first matching event with a device id is their sign-up; the sign-ups of every user
 * from one device are kept together (device-signups.ts), so a journey condition can count them.
 */
export interface DeviceSignupSpec {
  name: string;
  filter: EventFilter;
  /** The window either side of a user's own sign-up in which the device's sign-ups count. */
  withinMs: number;
  /** A device's sign-ups are kept this long after its newest one. */
  keepForMs: number;
  /** Sign-ups kept per device, the newest. */
  maxPerDevice: number;
}

/** Consecutive days (in the user's zone) with at least one matching event. */
export interface StreakSpec {
  name: string;
  filter: EventFilter;
}

export function matches(filter: EventFilter, e: AppEvent): boolean {
  if (filter.names.size > 0 && !filter.names.has(e.name)) return false;
  if (filter.channel !== undefined && filter.channel !== e.channel) return false;
  for (const key in filter.props) {
    if (e.props[key] !== filter.props[key]) return false;
  }
  return true;
}

/** Upper bounds on per-user state, whatever the input (hostile traffic included). */
export const STATE_BOUNDS = {
  /** Recent active days kept per metric: enough for a 30-day window plus a calendar month. */
  activeDays: 64,
  recentEventIds: 32,
  traits: 16,
  traitValueLength: 64,
  counterKeep: 100,
  sumBuckets: 400,
  /** HyperLogLog breakdowns: (metric, breakdown, value) days remembered to skip repeated adds. */
  hllSeen: 16,
} as const;
