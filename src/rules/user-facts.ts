/**
 * What the rules read about a user: a plain view the state step builds from its own state
 * (rules/ does not import state/). Times are ms since the epoch; day numbers are whole days
 * since 1970-01-01 of the local date in the user's zone (time/calendar.ts).
 */
export interface UserFacts {
  firstSeen: number;
  lastSeen: number;
  /** Lifecycle stage: new, active, dormant, churned, reactivated. */
  stage: string;
  stageSince: number;
  /** The user's IANA zone; "" = unknown (the reporting zone is used). */
  tz: string;
  traits: Readonly<Record<string, string>>;
  /** Per behaviour counter: the latest matching event times, ascending. */
  counters: Readonly<Record<string, readonly number[]>>;
  /** Per behaviour sum: the total over its window as of now. */
  sums: Readonly<Record<string, number>>;
  /** Per behaviour streak: the run ending on day `last` (user's zone). */
  streaks: Readonly<Record<string, { readonly current: number; readonly last: number }>>;
  /** Events per local hour of day (24 entries), or null when not kept: see `recordActiveHour`. */
  activeHours: readonly number[] | null;
  /**
   * Per device sign-up count (behaviour.deviceSignups) the user has a sign-up for: its time and
   * the sign-up times of every user from the same device, the user included, ascending, as
   * loaded for this batch. Absent: no sign-up recorded, or not loaded (not a triggering event).
   */
  deviceSignups: Readonly<Record<string, DeviceSignupFacts>>;
}

/**
 * What the rules read of the facts before an event: the stage and the counter and streak entries
 * (count, streak and stage triggers fire on the change an event makes). The state step snapshots
 * only these, per event.
 */
export type PriorFacts = Pick<UserFacts, 'stage' | 'counters' | 'streaks'>;

export interface DeviceSignupFacts {
  at: number;
  times: readonly number[];
}

/**
 * Sign-ups from the user's sign-up device within `withinMs` either side of their own, up to `t`
 * (a sign-up after the decision's event time is not counted, whenever it arrived): 0 without a
 * recorded sign-up.
 */
export function deviceSignupsWithin(d: DeviceSignupFacts | undefined, t: number, withinMs: number): number {
  if (d === undefined) return 0;
  const from = d.at - withinMs;
  const to = Math.min(d.at + withinMs, t);
  let n = 0;
  for (const x of d.times) if (x >= from && x <= to) n++;
  return n;
}

/** Matching times within (t - withinMs, t]. */
export function countWithin(times: readonly number[] | undefined, t: number, withinMs: number): number {
  let n = 0;
  if (times === undefined) return n;
  for (const x of times) if (x > t - withinMs && x <= t) n++;
  return n;
}

/** A streak's current run as of local day `today`: 0 once a day has been missed. */
export function liveStreak(s: { readonly current: number; readonly last: number } | undefined, today: number): number {
  return s !== undefined && s.last >= today - 1 ? s.current : 0;
}
