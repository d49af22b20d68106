import type { AppEvent } from '../contract/event.js';
import { applyConsentEvent } from './consent.js';
import { record, type DecideContext } from './decisions.js';
import { addWait } from './enter-journey.js';
import { matchesFilter } from './filter.js';
import { cancelledKeepMs, recordCancelledTouch, type Wait } from './journey-state.js';
import type { EventPlan } from './event-index.js';
import type { Filter, JourneySpec } from './rules-spec.js';

/**
 * What an event does besides triggering: consent choices, exits, follow-ups that end absence
 * waits, inactivity deadlines pushed back, late follow-ups and conversions. These apply to
 * stale events too: an old event is still a fact about the user, it only must not send.
 */

/** Before due waits fire: choices, exits and in-time follow-ups must win over a deadline. */
export function applyEventEffects(ctx: DecideContext, e: AppEvent, plan: EventPlan): void {
  if (plan.consent) for (const c of applyConsentEvent(ctx.spec.policy, ctx.state.consent, e)) record(ctx.out, 'consentChanges', c);
  if (plan.exits.length > 0) applyExits(ctx, e, plan.exits);
  if (plan.followUps.length > 0) endAbsenceWaits(ctx, e, plan.followUps);
  if (plan.inactivity.length > 0) pushBackInactivity(ctx, e, plan.inactivity);
}

/**
 * An exit event ends the journey: later steps, absence waits and touches not yet due. An exit
 * event older than the entry (a late event from before it) does not end that entry.
 */
function applyExits(ctx: DecideContext, e: AppEvent, journeys: readonly JourneySpec[]): void {
  const { state } = ctx;
  for (const j of journeys) {
    if (!matchesAny(j.exitOn, e)) continue;
    const entry = state.entries[j.id];
    const inEntry = entry !== undefined && entry.exitedAt === undefined && e.timeMs >= entry.at;
    // Exit events are common (any login ends a win-back) and seldom end a wait: the list is
    // looked through first and rebuilt only when one ends.
    let anyEnds = false;
    for (const w of state.waits) if ((anyEnds = exitEnds(w, j.id, inEntry, e.timeMs))) break;
    if (anyEnds) {
      state.waits = state.waits.filter((w) => {
        if (!exitEnds(w, j.id, inEntry, e.timeMs)) return true;
        record(ctx.out, 'cancellations', { journeyId: j.id, reason: 'exit', kind: w.kind === 'step' ? 'step_wait' : 'absence_wait', touchId: '', key: w.kind === 'absence' ? w.key : '' });
        return false;
      });
    }
    if (!inEntry) continue;
    if (entry.pending.length === 0) {
      entry.exitedAt = e.timeMs;
      continue;
    }
    for (const p of entry.pending) {
      if (p.sendAt <= ctx.now) continue;
      record(ctx.out, 'cancellations', { journeyId: j.id, reason: 'exit', kind: 'touch', touchId: p.touchId, key: '' });
      recordCancelledTouch(state, p.touchId, p.sendAt + cancelledKeepMs(ctx.spec));
      state.history = state.history.filter((h) => h.touchId !== p.touchId);
    }
    entry.pending = [];
    entry.exitedAt = e.timeMs;
  }
}

/** An exit of journey `journeyId` at `t` ends its step waits (of a live entry) and the absence waits begun by then. */
function exitEnds(w: Wait, journeyId: string, inEntry: boolean, t: number): boolean {
  return w.journeyId === journeyId && ((w.kind === 'step' && inEntry) || (w.kind === 'absence' && w.startedAt <= t));
}

/** `then` arrived within the window: the absence wait with the same key ends without a touch. */
function endAbsenceWaits(ctx: DecideContext, e: AppEvent, journeys: readonly JourneySpec[]): void {
  for (const j of journeys) {
    const t = j.trigger;
    if (t.type !== 'notFollowedBy' || !matchesFilter(t.then, e)) continue;
    const key = pairingKey(t.by, e);
    if (key === null || ctx.state.waits.length === 0) continue;
    let anyEnds = false;
    for (const w of ctx.state.waits) if ((anyEnds = followUpEnds(w, j.id, key, e.timeMs))) break;
    if (!anyEnds) continue;
    ctx.state.waits = ctx.state.waits.filter((w) => {
      if (!followUpEnds(w, j.id, key, e.timeMs)) return true;
      record(ctx.out, 'cancellations', { journeyId: j.id, reason: 'followed_by', kind: 'absence_wait', touchId: '', key });
      return false;
    });
  }
}

/** Each matching event moves the inactivity deadline to (event time + the inactivity span). */
function pushBackInactivity(ctx: DecideContext, e: AppEvent, journeys: readonly JourneySpec[]): void {
  for (const j of journeys) {
    const t = j.trigger;
    if (t.type !== 'inactive' || (t.match !== null && !matchesFilter(t.match, e))) continue;
    const dueAt = e.timeMs + t.forMs;
    // Runs for nearly every event (any activity pushes the deadline back): a loop, no closure.
    let current: Wait | undefined;
    for (const w of ctx.state.waits) {
      if (w.kind === 'inactive' && w.journeyId === j.id) {
        current = w;
        break;
      }
    }
    if (current !== undefined) current.dueAt = Math.max(current.dueAt, dueAt);
    else addWait(ctx, { kind: 'inactive', journeyId: j.id, dueAt });
  }
}

/** After due waits fired: a follow-up to an absence that already fired is late, and counted once. */
export function recordLateFollowUps(ctx: DecideContext, e: AppEvent, plan: EventPlan): void {
  if (ctx.state.fired.length === 0) return;
  for (const j of plan.followUps) {
    const t = j.trigger;
    if (t.type !== 'notFollowedBy' || !matchesFilter(t.then, e)) continue;
    const key = pairingKey(t.by, e);
    const i = ctx.state.fired.findIndex((f) => f.journeyId === j.id && f.key === key && e.timeMs > f.dueAt);
    if (i < 0) continue;
    const [f] = ctx.state.fired.splice(i, 1);
    record(ctx.out, 'lateFollowUps', { journeyId: j.id, key: f!.key, dueAt: f!.dueAt, at: e.timeMs, eventId: e.eventId });
  }
}

/** Conversions inside the attribution window of an entry, once per entry, holdouts included. */
export function recordConversions(ctx: DecideContext, e: AppEvent, plan: EventPlan): void {
  for (const j of plan.conversions) {
    const entry = ctx.state.entries[j.id];
    if (j.conversion === null || entry === undefined || entry.convertedAt !== undefined) continue;
    if (e.timeMs < entry.at || e.timeMs - entry.at > j.conversion.withinMs || !matchesFilter(j.conversion.match, e)) continue;
    entry.convertedAt = e.timeMs;
    record(ctx.out, 'conversions', { journeyId: j.id, group: entry.group, variant: entry.variant, occurrence: entry.occurrence, enteredAt: entry.at, at: e.timeMs, eventId: e.eventId });
  }
}

function followUpEnds(w: Wait, journeyId: string, key: string, t: number): boolean {
  return w.kind === 'absence' && w.journeyId === journeyId && w.key === key && t >= w.startedAt && t <= w.dueAt;
}

function matchesAny(filters: readonly Filter[], e: AppEvent): boolean {
  for (const f of filters) if (matchesFilter(f, e)) return true;
  return false;
}

/** The value of the pairing prop (`by`), "" without one; null when the event lacks it. */
export function pairingKey(by: string | null, e: AppEvent): string | null {
  if (by === null) return '';
  const v = Object.prototype.hasOwnProperty.call(e.props, by) ? e.props[by] : undefined;
  return v === undefined ? null : v.slice(0, 128);
}
