import { emptyJourneyState, journeyStateFrom, type JourneyUserState } from '../rules/journey-state.js';
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
  /** Per behaviour.deviceSignups name: the user's sign-up device (a hash) and time, the first one only. */
  signups?: Record<string, [string, number]>;
  /** The latest event ids, newest last (long ones hashed: recent-ids.ts): a producer's retry of a recent event is a no-op. */
  recentIds: string[];
}

export interface StreakState {
  last: number;
  current: number;
  best: number;
}

/**
 * Fields whose empty value is left out of the stored JSON; decoding puts the empty value back.
 * Most users have no traits, counters or sums yet and a journey state of mostly empty lists:
 * writing them cost encode time, Lua argument bytes and Redis memory for nothing. States stored
 * with these fields present (before this change) decode the same: no migration.
 */
const TOP_FIELDS = ['tz', 'active', 'counters', 'sums', 'streaks', 'traits', 'recentIds', 'bActive', 'hllSeen'] as const;

/**
 * The journey sub-object's fields, from the rules' own empty state: a field the rules add later
 * is dropped when empty and restored the same way, with no change here.
 */
const JOURNEY_FIELDS: readonly string[] = Object.keys(emptyJourneyState());

function isEmptyValue(v: unknown): boolean {
  if (v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  if (v !== null && typeof v === 'object') {
    for (const _ in v) return false;
    return true;
  }
  return false;
}

export function encodeUserState(s: UserState): string {
  // A spread copy keeps the state's shape (V8's fast clone) and JSON.stringify leaves out
  // properties set to undefined: cheaper than building a new object key by key or deleting.
  const out: Record<string, unknown> = { ...s };
  for (const key of TOP_FIELDS) if (isEmptyValue(out[key])) out[key] = undefined;
  if (s.journeys !== undefined) {
    // Kept even when all its lists are empty: "journeys ran for this user" stays visible.
    const j: Record<string, unknown> = { ...s.journeys };
    for (const key of JOURNEY_FIELDS) if (isEmptyValue(j[key])) j[key] = undefined;
    out['journeys'] = j;
  }
  return JSON.stringify(out);
}

export function decodeUserState(text: string): UserState {
  const p = JSON.parse(text) as Partial<UserState> & Record<string, unknown>;
  // A stored null journey state reads as an empty one (as it did when decoding spread it over one).
  const s = shapedUserState(p, p.journeys !== undefined ? journeyStateFrom((p.journeys ?? {}) as Partial<JourneyUserState> & Record<string, unknown>) : undefined);
  for (const key in p) if (!Object.prototype.hasOwnProperty.call(s, key) && !KNOWN_FIELDS.has(key)) carryOver(s, key, p[key]);
  return s;
}

/** The state of a user first seen at `t`, in the one shape every state has. */
export function newUserState(t: number): UserState {
  return shapedUserState({ firstSeen: t, lastSeen: t, stage: 'new', stageSince: t }, undefined);
}

/**
 * Every state, decoded or new, is built here, field by field in one order, with the optional
 * fields present (undefined when absent; JSON.stringify leaves them out): one object shape (V8
 * hidden class) for all. Shapes that depended on which optional fields a user had, and in which
 * order the step added them, made the step's property accesses polymorphic: V8 then threw away
 * its optimised code for the step ("wrong map") and compiled it again, up to 7 times per process,
 * ~60 ms of compiler time each (filling the gaps of a decoded state afterwards cost +15% decide
 * time for the same reason).
 */
function shapedUserState(p: Partial<UserState>, journeys: JourneyUserState | undefined): UserState {
  return {
    firstSeen: p.firstSeen as number,
    lastSeen: p.lastSeen as number,
    reactivatedAt: p.reactivatedAt,
    tz: p.tz ?? '',
    stage: p.stage as UserState['stage'],
    stageSince: p.stageSince as number,
    active: p.active ?? {},
    counters: p.counters ?? {},
    sums: p.sums ?? {},
    streaks: p.streaks ?? {},
    traits: p.traits ?? {},
    bActive: p.bActive,
    hllSeen: p.hllSeen,
    journeys,
    hours: p.hours,
    signups: p.signups,
    recentIds: p.recentIds ?? [],
  };
}

/** Keeps a stored field this version does not know; defineProperty, so a "__proto__" key stays a plain field. */
function carryOver(target: object, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Fields decodeUserState places itself; any other stored field is carried over as it is. */
const KNOWN_FIELDS: ReadonlySet<string> = new Set(['firstSeen', 'lastSeen', 'reactivatedAt', 'tz', 'stage', 'stageSince', 'active', 'counters', 'sums', 'streaks', 'traits', 'bActive', 'hllSeen', 'journeys', 'hours', 'signups', 'recentIds']);
