import type { AppEvent } from '../contract/event.js';
import { dayNumber } from '../time/calendar.js';
import type { DecideContext } from './decisions.js';
import { addWait, enterJourney, skip } from './enter-journey.js';
import { pairingKey } from './event-effects.js';
import type { EventPlan } from './event-index.js';
import { matchesFilter } from './filter.js';
import type { JourneySpec } from './rules-spec.js';
import { countWithin, liveStreak, type PriorFacts, type UserFacts } from './user-facts.js';

/**
 * The triggers an event fires at once (event, count, streak, stage, first time) and the
 * absence waits it starts (notFollowedBy). An event older than maxTriggerAge by the wall clock
 * fires nothing: each trigger it would have fired is a skip with reason stale_event.
 */
export function eventTriggers(ctx: DecideContext, before: PriorFacts | null, e: AppEvent, plan: EventPlan): void {
  const stale = ctx.now - e.timeMs > ctx.spec.maxTriggerAgeMs;
  let today: number | undefined;
  for (const journey of plan.triggers) {
    const t = journey.trigger;
    switch (t.type) {
      case 'event':
        if (matchesFilter(t.match, e)) fire(ctx, journey, e, stale);
        break;
      case 'count':
        // Fires when this event takes the count to the threshold, not on every event above it.
        if (matchesFilter(t.match, e) && countWithin(before?.counters[t.counter], e.timeMs, t.withinMs) < t.atLeast && countWithin(ctx.facts.counters[t.counter], e.timeMs, t.withinMs) >= t.atLeast) fire(ctx, journey, e, stale);
        break;
      case 'streak':
        today ??= dayNumber(e.timeMs, ctx.tz);
        if (liveStreak(before?.streaks[t.streak], today) < t.reaches && liveStreak(ctx.facts.streaks[t.streak], today) >= t.reaches) fire(ctx, journey, e, stale);
        break;
      case 'stage':
        if (stageChanged(journey, before?.stage ?? null, ctx.facts.stage)) fire(ctx, journey, e, stale);
        break;
      case 'firstTime':
        if (matchesFilter(t.match, e) && !ctx.state.firstTimeSeen.includes(journey.id)) {
          ctx.state.firstTimeSeen.push(journey.id);
          fire(ctx, journey, e, stale);
        }
        break;
      case 'notFollowedBy': {
        const key = matchesFilter(t.first, e) ? pairingKey(t.by, e) : null;
        if (key === null) break;
        if (stale) skip(ctx, journey.id, 'stale_event', e.eventId);
        // A second start of the same flow keeps the first deadline: the flow began then.
        else if (!ctx.state.waits.some((w) => w.kind === 'absence' && w.journeyId === journey.id && w.key === key)) {
          addWait(ctx, { kind: 'absence', journeyId: journey.id, dueAt: e.timeMs + t.withinMs, key, occurrence: e.eventId, startedAt: e.timeMs });
        }
        break;
      }
      case 'inactive':
        break;
    }
  }
}

function fire(ctx: DecideContext, journey: JourneySpec, e: AppEvent, stale: boolean): void {
  if (stale) skip(ctx, journey.id, 'stale_event', e.eventId);
  else enterJourney(ctx, { journey, occurrence: e.eventId, triggerEventId: e.eventId, at: e.timeMs });
}

/**
 * Stage transitions recorded on time, with no event (going dormant): the occurrence is the
 * moment of the transition, which the state derives the same way on every replay.
 */
export function timerStageTriggers(ctx: DecideContext, before: PriorFacts, after: UserFacts): void {
  const stale = ctx.now - after.stageSince > ctx.spec.maxTriggerAgeMs;
  for (const journey of ctx.spec.journeys) {
    if (journey.trigger.type !== 'stage' || !stageChanged(journey, before.stage, after.stage)) continue;
    const occurrence = String(after.stageSince);
    if (stale) skip(ctx, journey.id, 'stale_timer', occurrence);
    else enterJourney(ctx, { journey, occurrence, triggerEventId: '', at: after.stageSince });
  }
}

function stageChanged(journey: JourneySpec, from: string | null, to: string): boolean {
  const t = journey.trigger;
  if (t.type !== 'stage' || from === to) return false;
  return (t.from.length === 0 || (from !== null && t.from.includes(from))) && (t.to.length === 0 || t.to.includes(to));
}
