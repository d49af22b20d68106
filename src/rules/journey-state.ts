import type { Group } from './assignment.js';
import type { RulesSpec } from './rules-spec.js';

/**
 * What the rules keep per user, as plain JSON the state step stores inside the user's state.
 * Timers are part of it (`waits`): the state step schedules the user's next timer at
 * `nextDueAt(state)` and calls the rules when it is due. Every list has a bound.
 */
export interface JourneyUserState {
  /** The latest entry per journey id. */
  entries: Record<string, JourneyEntry>;
  /** Pending timers: absence deadlines, inactivity deadlines, later steps. */
  waits: Wait[];
  /** Touches sent or scheduled (not held out, not suppressed), for caps and the minimum gap. */
  history: TouchRecord[];
  /** Send time of the latest touch per channel (any journey, capped or not). */
  lastTouchByChannel: Record<string, number>;
  /** Recorded consent choices per channel (absent = the policy default). */
  consent: Record<string, ConsentRecord>;
  /** Journeys whose firstTime trigger has matched for this user. */
  firstTimeSeen: string[];
  /** Absence waits that fired recently, so a late awaited event is counted. */
  fired: FiredAbsence[];
  /**
   * Touches an exit called off before their send time, until their job can no longer run.
   * The worker's send-time re-check refuses these ids: the entry's `exitedAt` alone is not
   * enough, because a re-entry before the cancelled touch's sendAt replaces the entry.
   */
  cancelled: CancelledTouch[];
}

export interface CancelledTouch {
  touchId: string;
  /** Forgotten after this time: the touch's sendAt plus `cancelledKeepMs`. */
  until: number;
}

export interface JourneyEntry {
  /** When the user entered: the event time, or the timer's due time. */
  at: number;
  /** The triggering event id or timer due time: part of every touch id of this entry. */
  occurrence: string;
  /** The event that triggered the entry; "" for a timer. */
  triggerEventId: string;
  group: Group;
  variant: string;
  exitedAt?: number;
  convertedAt?: number;
  lastTouch?: { at: number; channel: string; stepId: string };
  /** Touches decided with a send time still ahead at decision time; an exit cancels them. */
  pending: Array<{ touchId: string; sendAt: number }>;
}

export type Wait =
  | { kind: 'absence'; journeyId: string; dueAt: number; key: string; occurrence: string; startedAt: number }
  | { kind: 'inactive'; journeyId: string; dueAt: number }
  | { kind: 'step'; journeyId: string; dueAt: number; step: number };

export interface TouchRecord {
  /** Send time. */
  at: number;
  channel: string;
  journeyId: string;
  touchId: string;
}

export interface ConsentRecord {
  granted: boolean;
  /** Event time of the choice; an older choice arriving later does not override it. */
  at: number;
}

export interface FiredAbsence {
  journeyId: string;
  key: string;
  dueAt: number;
  /** Forgotten after this time. */
  until: number;
}

export const JOURNEY_STATE_BOUNDS = {
  waits: 64,
  absenceWaitsPerJourney: 8,
  history: 64,
  fired: 16,
  consentChannels: 16,
  cancelled: 32,
} as const;

/**
 * How long past its sendAt a cancelled touch id is kept. A job can run after its sendAt (a
 * worker backlog, retries with backoff, a channel's rate limit), so the id must outlive it:
 * a day, or the longest step delay of any journey when that is longer.
 */
export function cancelledKeepMs(spec: Pick<RulesSpec, 'journeys'>): number {
  let keep = CANCELLED_KEEP.get(spec);
  if (keep === undefined) {
    keep = 86_400_000;
    for (const j of spec.journeys) for (const s of j.steps) keep = Math.max(keep, s.timing.delayMs);
    CANCELLED_KEEP.set(spec, keep);
  }
  return keep;
}
const CANCELLED_KEEP = new WeakMap<object, number>();

/**
 * Records a touch called off before its send time. Bounded: past the bound, the id that expires
 * first makes room (the touch furthest in the past, whose job most likely ran already).
 */
export function recordCancelledTouch(s: JourneyUserState, touchId: string, until: number): void {
  if (s.cancelled.some((c) => c.touchId === touchId)) return;
  s.cancelled.push({ touchId, until });
  if (s.cancelled.length > JOURNEY_STATE_BOUNDS.cancelled) {
    s.cancelled.sort((a, b) => a.until - b.until);
    s.cancelled = s.cancelled.slice(-JOURNEY_STATE_BOUNDS.cancelled);
  }
}

export function emptyJourneyState(): JourneyUserState {
  return journeyStateFrom({});
}

/**
 * A journey state as stored (JSON.parse'd: empty fields left out, null where a list was, fields
 * of a newer version) in the one shape every journey state has: the stored lists taken as they
 * are, only the missing ones made. The one literal of that shape: new and decoded states share
 * a V8 hidden class. Fields this version does not know are carried over (defineProperty, so a
 * "__proto__" key stays a plain field), as decodeUserState keeps a user's.
 */
export function journeyStateFrom(p: Partial<JourneyUserState> & Record<string, unknown>): JourneyUserState {
  const j: JourneyUserState = {
    entries: p.entries ?? {},
    waits: p.waits ?? [],
    history: p.history ?? [],
    lastTouchByChannel: p.lastTouchByChannel ?? {},
    consent: p.consent ?? {},
    firstTimeSeen: p.firstTimeSeen ?? [],
    fired: p.fired ?? [],
    cancelled: p.cancelled ?? [],
  };
  for (const key in p) {
    if (!Object.prototype.hasOwnProperty.call(j, key)) Object.defineProperty(j, key, { value: p[key], enumerable: true, writable: true, configurable: true });
  }
  return j;
}

/**
 * A copy the caller may change; the input stays as it was. Fields missing from a state stored
 * by an older version read as empty.
 */
export function cloneJourneyState(s: JourneyUserState): JourneyUserState {
  // Runs once per user per batch: plain loops, and no copies of empty lists.
  const entries: Record<string, JourneyEntry> = {};
  const from = s.entries;
  if (from !== undefined) {
    for (const k in from) {
      const e = from[k]!;
      entries[k] = { ...e, pending: copyEach(e.pending) };
    }
  }
  return {
    entries,
    waits: copyEach(s.waits),
    history: copyEach(s.history),
    lastTouchByChannel: { ...s.lastTouchByChannel },
    consent: { ...s.consent },
    firstTimeSeen: s.firstTimeSeen === undefined || s.firstTimeSeen.length === 0 ? [] : s.firstTimeSeen.slice(),
    fired: copyEach(s.fired),
    cancelled: copyEach(s.cancelled),
  };
}

/**
 * The given state itself, to be changed in place, with what cloneJourneyState fills in for a
 * state stored by an older version (or with a null where a list belongs) filled in the same way.
 * Fields it does not know are kept, as decodeUserState keeps a user's: a state written by a
 * newer version and read by an older one after a rollback does not lose them.
 */
export function adoptJourneyState(s: JourneyUserState): JourneyUserState {
  s.entries ??= {};
  for (const k in s.entries) {
    const e = s.entries[k]!;
    e.pending ??= [];
  }
  s.waits ??= [];
  s.history ??= [];
  s.lastTouchByChannel ??= {};
  s.consent ??= {};
  s.firstTimeSeen ??= [];
  s.fired ??= [];
  s.cancelled ??= [];
  return s;
}

function copyEach<T extends object>(xs: readonly T[] | undefined): T[] {
  if (xs === undefined || xs.length === 0) return [];
  const out = new Array<T>(xs.length);
  for (let i = 0; i < xs.length; i++) out[i] = { ...xs[i]! };
  return out;
}

/** When the user's next journey timer is due, or null when none is pending. */
export function nextDueAt(s: JourneyUserState): number | null {
  let next = Infinity;
  for (const w of s.waits) if (w.dueAt < next) next = w.dueAt;
  return next === Infinity ? null : next;
}

/**
 * Drops what no longer matters at `now`: state of journeys no longer configured, touch history
 * older than `historyHorizonMs`, fired absences past their horizon; then applies the bounds.
 * Runs on every event, so it allocates only when there is something to drop (the tests for that
 * are plain loops: a closure per list and event was a tenth of the journey step's garbage).
 */
export function pruneJourneyState(s: JourneyUserState, journeyIds: ReadonlySet<string>, now: number, historyHorizonMs: number): void {
  for (const id in s.entries) {
    if (!journeyIds.has(id)) delete s.entries[id];
    else {
      const e = s.entries[id]!;
      if (e.pending.length > 0 && anyDue(e.pending, now)) e.pending = e.pending.filter((p) => p.sendAt > now);
    }
  }
  if (anyWaitOutside(s.waits, journeyIds)) s.waits = s.waits.filter((w) => journeyIds.has(w.journeyId));
  if (anyIdOutside(s.firstTimeSeen, journeyIds)) s.firstTimeSeen = s.firstTimeSeen.filter((id) => journeyIds.has(id));
  if (s.history.length > 0) {
    const from = now - historyHorizonMs;
    if (anyAtOrBefore(s.history, from)) s.history = s.history.filter((h) => h.at > from);
    s.history.sort((a, b) => a.at - b.at);
    if (s.history.length > JOURNEY_STATE_BOUNDS.history) s.history = s.history.slice(-JOURNEY_STATE_BOUNDS.history);
  }
  if (s.fired.length > 0) {
    s.fired = s.fired.filter((f) => f.until > now && journeyIds.has(f.journeyId));
    if (s.fired.length > JOURNEY_STATE_BOUNDS.fired) s.fired = s.fired.slice(-JOURNEY_STATE_BOUNDS.fired);
  }
  if (s.cancelled.length > 0 && s.cancelled.some((c) => c.until <= now)) s.cancelled = s.cancelled.filter((c) => c.until > now);
}

function anyDue(pending: ReadonlyArray<{ sendAt: number }>, now: number): boolean {
  for (const p of pending) if (p.sendAt <= now) return true;
  return false;
}

function anyWaitOutside(waits: readonly Wait[], ids: ReadonlySet<string>): boolean {
  for (const w of waits) if (!ids.has(w.journeyId)) return true;
  return false;
}

function anyIdOutside(list: readonly string[], ids: ReadonlySet<string>): boolean {
  for (const id of list) if (!ids.has(id)) return true;
  return false;
}

function anyAtOrBefore(history: readonly TouchRecord[], t: number): boolean {
  for (const h of history) if (h.at <= t) return true;
  return false;
}

/** True while an entry has a later step waiting or a touch not yet due. */
export function isActiveEntry(s: JourneyUserState, journeyId: string, now: number): boolean {
  const e = s.entries[journeyId];
  if (e === undefined || e.exitedAt !== undefined) return false;
  return e.pending.some((p) => p.sendAt > now) || s.waits.some((w) => w.kind === 'step' && w.journeyId === journeyId);
}
