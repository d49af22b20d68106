import type { JourneyUserState } from '../rules/journey-state.js';
import type { Stage } from './lifecycle.js';

/**
 * Everything Nudge keeps about one user, stored as one JSON value in Redis. Every collection in
 * it has a bound (`STATE_BOUNDS`), so hostile input cannot grow a user without limit.
 */
export interface UserState {
  firstSeen: number;
  lastSeen: number;
  /** Time of the latest event that ended a gap of at least the dormancy threshold. */
  reactivatedAt?: number;
  /** The user's IANA zone from their latest event that had one; '' = unknown. */
  tz: string;
  /** The stage last recorded (by an event or a timer) and since when; transitions compare to it. */
  stage: Stage;
  stageSince: number;
  /** Per activity metric: recent active days (reporting zone day numbers), ascending. */
  active: Record<string, number[]>;
  /** Per counter: the latest matching event times, ascending, at most `keep`. */
  counters: Record<string, number[]>;
  /** Per sum: [bucket start ms, sum of values] pairs, ascending. */
  sums: Record<string, Array<[number, number]>>;
  /** Per streak: the last day (user's zone) with a matching event, the run ending there, the best run. */
  streaks: Record<string, StreakState>;
  traits: Record<string, string>;
  /** Exact breakdowns: recent active days per "metric/breakdown/value" (absent in older states). */
  bActive?: Record<string, number[]>;
  /** HyperLogLog breakdowns: the day the user was last added per "metric/breakdown/value". */
  hllSeen?: Record<string, number>;
  /** Journeys: entries, waits (timers), touch history, consent (rules/journey-state.ts). */
  journeys?: JourneyUserState;
  /** Events per local hour of day (24 counts, user's zone): the usual active hour for sends. */
  hours?: number[];
  /** The latest event ids, newest last: a producer's retry of a recent event is a no-op. */
  recentIds: string[];
}

export interface StreakState {
  last: number;
  current: number;
  best: number;
}

export function encodeUserState(s: UserState): string {
  return JSON.stringify(s);
}

export function decodeUserState(text: string): UserState {
  return JSON.parse(text) as UserState;
}
