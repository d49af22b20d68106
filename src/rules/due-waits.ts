import type { DecideContext } from './decisions.js';
import { enterJourney, planStep, scheduleNextStep, skip } from './enter-journey.js';
import { JOURNEY_STATE_BOUNDS } from './journey-state.js';

/**
 * Fires the waits due by the wall clock (`dueAt <= now`), oldest first: an absence deadline
 * passed with no follow-up, an inactivity deadline passed, a later step's time came. A wait
 * overdue by more than maxTriggerAge (the engine was down) fires nothing: a skip, stale_timer.
 */
export function fireDueWaits(ctx: DecideContext): void {
  const { state, now, spec } = ctx;
  // Runs on every event and almost never finds a wait due: test before allocating.
  if (!state.waits.some((w) => w.dueAt <= now)) return;
  const due = state.waits.filter((w) => w.dueAt <= now).sort((a, b) => a.dueAt - b.dueAt);
  if (due.length === 0) return;
  state.waits = state.waits.filter((w) => w.dueAt > now);
  for (const w of due) {
    const journey = spec.journeys.find((j) => j.id === w.journeyId);
    if (journey === undefined) continue;
    const stale = now - w.dueAt > spec.maxTriggerAgeMs;
    if (w.kind === 'absence') {
      const horizon = journey.trigger.type === 'notFollowedBy' ? journey.trigger.withinMs : 0;
      state.fired.push({ journeyId: journey.id, key: w.key, dueAt: w.dueAt, until: w.dueAt + horizon });
      if (state.fired.length > JOURNEY_STATE_BOUNDS.fired) state.fired.shift();
      if (stale) skip(ctx, journey.id, 'stale_timer', w.occurrence);
      else enterJourney(ctx, { journey, occurrence: w.occurrence, triggerEventId: '', at: w.dueAt });
    } else if (w.kind === 'inactive') {
      if (stale) skip(ctx, journey.id, 'stale_timer', String(w.dueAt));
      else enterJourney(ctx, { journey, occurrence: String(w.dueAt), triggerEventId: '', at: w.dueAt });
    } else {
      const entry = state.entries[journey.id];
      if (entry === undefined || entry.exitedAt !== undefined) continue;
      if (stale) {
        skip(ctx, journey.id, 'stale_timer', entry.occurrence, `steps[${w.step}]`);
        scheduleNextStep(ctx, journey, w.step, w.dueAt);
      } else {
        planStep(ctx, journey, entry, w.step, w.dueAt);
      }
    }
  }
}
