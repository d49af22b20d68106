import { assign } from './assignment.js';
import { firstFailingCondition } from './conditions.js';
import { record, type DecideContext } from './decisions.js';
import { isActiveEntry, JOURNEY_STATE_BOUNDS, type JourneyEntry, type Wait } from './journey-state.js';
import type { SkipReason } from './reasons.js';
import type { JourneySpec } from './rules-spec.js';
import { stepSendAt } from './send-time.js';

/** A trigger that fired: the user enters the journey unless re-entry or a condition says no. */
export interface EntryTrigger {
  journey: JourneySpec;
  /** The triggering event id, or the timer's due time. */
  occurrence: string;
  /** "" for a timer. */
  triggerEventId: string;
  /** Event time, or the timer's due time: the base of the first step's delay. */
  at: number;
}

/**
 * Enters the user into the journey and plans its first step, or records why not. Entry, not
 * delivery, is what counts: a user who entered and was capped has entered (re-entry rules
 * apply), and holdout users enter too, so conversions are counted from assignment.
 */
export function enterJourney(ctx: DecideContext, t: EntryTrigger): void {
  const { journey } = t;
  const prior = ctx.state.entries[journey.id];
  let refusal: SkipReason | null = null;
  let detail = '';
  // A step planned earlier in this same call (not yet gated) is pending too.
  const planned = ctx.planned.some((p) => p.journey.id === journey.id && p.sendAt > ctx.now);
  if (planned || isActiveEntry(ctx.state, journey.id, ctx.now)) refusal = 'already_in_journey';
  else if (prior !== undefined && journey.reEntry.kind === 'never') refusal = 'reentry_never';
  else if (prior !== undefined && journey.reEntry.kind === 'cooldown' && t.at - prior.at < journey.reEntry.ms) refusal = 'reentry_cooldown';
  else {
    const failing = firstFailingCondition(journey.conditions, ctx.facts, t.at, ctx.tz);
    // A device check that fails has its own reason: withheld rewards are what fraud teams count.
    if (failing >= 0) [refusal, detail] = [journey.conditions[failing]!.kind === 'deviceSignups' ? 'device_signups' : 'conditions_not_met', `conditions[${failing}]`];
  }
  if (refusal !== null) {
    skip(ctx, journey.id, refusal, t.occurrence, detail);
    return;
  }
  const { group, variant } = assign(journey, ctx.spec.policy, ctx.userId);
  const entry: JourneyEntry = { at: t.at, occurrence: t.occurrence, triggerEventId: t.triggerEventId, group, variant, pending: [] };
  ctx.state.entries[journey.id] = entry;
  planStep(ctx, journey, entry, 0, stepSendAt(journey.steps[0]!.timing, t.at, ctx.tz, ctx.facts.activeHours));
}

/**
 * Queues step `step` for gating at `sendAt` (never in the past) and schedules the step after
 * it as a wait, due when that step is to be sent: caps and quiet hours are then checked with
 * the history of that moment, and an exit before it cancels it.
 */
export function planStep(ctx: DecideContext, journey: JourneySpec, entry: JourneyEntry, step: number, sendAt: number): void {
  ctx.planned.push({ journey, step, entry, sendAt: Math.max(sendAt, ctx.now) });
  scheduleNextStep(ctx, journey, step, sendAt);
}

export function scheduleNextStep(ctx: DecideContext, journey: JourneySpec, step: number, sendAt: number): void {
  const next = journey.steps[step + 1];
  if (next !== undefined) addWait(ctx, { kind: 'step', journeyId: journey.id, step: step + 1, dueAt: stepSendAt(next.timing, sendAt, ctx.tz, ctx.facts.activeHours) });
}

/**
 * Adds a wait within the bounds: at most `absenceWaitsPerJourney` absence waits per journey and
 * `waits` in all; the oldest absence wait makes room (a skip with reason wait_limit).
 */
export function addWait(ctx: DecideContext, w: Wait): void {
  const waits = ctx.state.waits;
  // Fewer waits than either bound: there is room. Tested first, before any closure or list is
  // made: an inactivity journey adds a wait on a user's first event, most users have few.
  if (waits.length < JOURNEY_STATE_BOUNDS.absenceWaitsPerJourney) {
    waits.push(w);
    record(ctx.out, 'scheduled', { ...w });
    return;
  }
  const absences = (journeyId?: string) => waits.filter((x) => x.kind === 'absence' && (journeyId === undefined || x.journeyId === journeyId));
  const over = () =>
    (w.kind === 'absence' && absences(w.journeyId).length >= JOURNEY_STATE_BOUNDS.absenceWaitsPerJourney) || waits.length >= JOURNEY_STATE_BOUNDS.waits;
  while (over()) {
    const pool = w.kind === 'absence' && absences(w.journeyId).length > 0 ? absences(w.journeyId) : absences();
    const oldest = pool.sort((a, b) => a.dueAt - b.dueAt)[0];
    if (oldest === undefined) {
      skip(ctx, w.journeyId, 'wait_limit', w.kind === 'absence' ? w.occurrence : String(w.dueAt), w.kind);
      return;
    }
    waits.splice(waits.indexOf(oldest), 1);
    skip(ctx, oldest.journeyId, 'wait_limit', oldest.kind === 'absence' ? oldest.occurrence : '', 'absence');
  }
  waits.push(w);
  record(ctx.out, 'scheduled', { ...w });
}

export function skip(ctx: DecideContext, journeyId: string, reason: SkipReason, occurrence: string, detail = ''): void {
  record(ctx.out, 'skipped', { journeyId, reason, occurrence, detail });
}
