import type { AppEvent } from '../contract/event.js';
import { decideJourneys } from '../rules/decide-journeys.js';
import type { JourneyStepResult, TouchDecision } from '../rules/decisions.js';
import type { RulesSpec } from '../rules/rules-spec.js';
import type { UserFacts } from '../rules/user-facts.js';
import { encodeOutboxEntry, type OutboxEntry } from '../touches/outbox-entry.js';
import type { TouchJob } from '../touches/touch-job.js';
import { localHour } from '../time/calendar.js';
import { windowSum } from './windows.js';
import type { StateSpec } from './spec.js';
import type { UserState } from './user-state.js';

/**
 * The state step's edge to the rules: builds the plain facts the rules read from a user's
 * state, runs the journey decision, and turns its result into what the commit writes — the
 * new journey state, outbox entries for touches to send, and per-journey counters for stats.
 */

/** Counter hash (per lane) of one journey's decisions, conversions and spend. */
export const journeyHash = (journeyId: string): string => `j:${journeyId}`;

/** The facts the rules see, copied so later updates of the same state in a batch do not leak in. */
export function factsOf(s: UserState, now: number, spec: StateSpec): UserFacts {
  const sums: Record<string, number> = {};
  for (const sum of spec.sums) sums[sum.name] = windowSum(s.sums[sum.name] ?? [], now, sum.windowMs, sum.bucketMs);
  return {
    firstSeen: s.firstSeen,
    lastSeen: s.lastSeen,
    stage: s.stage,
    stageSince: s.stageSince,
    tz: s.tz,
    traits: { ...s.traits },
    counters: { ...s.counters },
    sums,
    streaks: { ...s.streaks },
    activeHours: s.hours ?? null,
  };
}

/** Counts the event in the user's local hour-of-day histogram (24 counts: bounded). */
export function recordActiveHour(s: UserState, t: number, reportingTimeZone: string): void {
  const hours = s.hours?.length === 24 ? [...s.hours] : new Array<number>(24).fill(0);
  const h = localHour(t, s.tz !== '' ? s.tz : reportingTimeZone);
  hours[h] = (hours[h] ?? 0) + 1;
  s.hours = hours;
}

export interface JourneyEffects {
  outbox: OutboxEntry[];
  /** hash suffix -> field -> delta, merged into the step's counters. */
  counters: Array<[string, string, number]>;
  nextDueAt: number | null;
}

/** Runs the rules for one event (or a timer tick) and stores the new journey state in `s`. */
export function runJourneys(
  rules: RulesSpec,
  userId: string,
  s: UserState,
  before: UserFacts | null,
  event: AppEvent | null,
  now: number,
  spec: StateSpec,
): JourneyEffects {
  const result = decideJourneys(rules, { userId, now, before, after: factsOf(s, now, spec), event, state: s.journeys ?? null });
  s.journeys = result.state;
  return effectsOf(rules, result);
}

function effectsOf(rules: RulesSpec, r: JourneyStepResult): JourneyEffects {
  const out: JourneyEffects = { outbox: [], counters: [], nextDueAt: r.nextDueAt };
  for (const t of r.touches) {
    count(out, t.journeyId, `outcome:${t.outcome}`);
    count(out, t.journeyId, `reason:${t.reason}`);
    // Intent to treat: a user counts in their group from the entry's first step decision,
    // whether or not a touch is ever delivered.
    if (isFirstStep(rules, t)) count(out, t.journeyId, `entered:${t.group}:${t.variant}`);
    if (t.outcome === 'send' || t.outcome === 'defer') {
      out.outbox.push(encodeOutboxEntry(jobOf(t)));
      // What the decision expects to charge (the stats' costDecided); the ledger charges at send.
      if (t.cost > 0) count(out, t.journeyId, 'cost', t.cost);
    }
  }
  for (const k of r.skipped) count(out, k.journeyId, `skipped:${k.reason}`);
  for (const c of r.cancellations) count(out, c.journeyId, `cancelled:${c.reason}`);
  for (const c of r.conversions) count(out, c.journeyId, `converted:${c.group}:${c.variant}`);
  for (const l of r.lateFollowUps) count(out, l.journeyId, 'late_follow_up');
  return out;
}

function count(out: JourneyEffects, journeyId: string, field: string, delta = 1): void {
  out.counters.push([journeyHash(journeyId), field, delta]);
}

function isFirstStep(rules: RulesSpec, t: TouchDecision): boolean {
  const j = rules.journeys.find((x) => x.id === t.journeyId);
  return j !== undefined && j.steps[0]?.id === t.stepId;
}

/** The BullMQ job of a touch (DESIGN §2.2): only the template's attributes, no other user data. */
export function jobOf(t: TouchDecision): TouchJob {
  return {
    touchId: t.touchId,
    userId: t.userId,
    journeyId: t.journeyId,
    stepId: t.stepId,
    channel: t.channel,
    template: t.template,
    variant: t.variant,
    triggerEventId: t.triggerEventId,
    triggeredAt: t.triggeredAt,
    sendAt: t.sendAt,
    attributes: t.attributes,
  };
}
