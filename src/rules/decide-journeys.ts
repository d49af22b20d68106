import { DAY_MS, dayNumber } from '../time/calendar.js';
import { touchIdOf } from './assignment.js';
import { emptyStepResult, record, type DecideContext, type JourneyInput, type JourneyStepResult, type TouchDecision } from './decisions.js';
import { fireDueWaits } from './due-waits.js';
import { applyEventEffects, recordConversions, recordLateFollowUps } from './event-effects.js';
import { eventPlan } from './event-index.js';
import { eventTriggers, timerStageTriggers } from './event-triggers.js';
import { adoptJourneyState, cloneJourneyState, emptyJourneyState, nextDueAt, pruneJourneyState, type TouchRecord } from './journey-state.js';
import { zoneOf } from './local-time.js';
import { gateTouch, type BudgetRemaining } from './policy-gate.js';
import type { JourneySpec, RulesSpec } from './rules-spec.js';


/**
 * The journey step for one user: an event (or a timer tick) in, touch decisions with reasons,
 * cancellations, conversions and the user's new journey state out. No I/O, no clock: the same
 * input gives the same output, touch ids included, in any process. The input state is left as
 * it was, unless the caller gives it away (`owned`): it is then changed in place and returned.
 *
 * Order within a call: consent choices, exits, in-time follow-ups and inactivity push-backs
 * first (they must win over a deadline passing in the same call); then waits due by the wall
 * clock fire; then late follow-ups and conversions are recorded (before the event's own
 * triggers, so an event never converts the entry it creates); then the event's triggers; last,
 * every planned step is gated, highest journey priority first, so a higher-priority touch
 * takes the last slot of a cap.
 */
export function decideJourneys(spec: RulesSpec, input: JourneyInput): JourneyStepResult {
  const state = input.state === null ? emptyJourneyState() : input.owned === true ? adoptJourneyState(input.state) : cloneJourneyState(input.state);
  const { journeyIds, horizonMs } = derived(spec);
  pruneJourneyState(state, journeyIds, input.now, horizonMs);
  const ctx: DecideContext = {
    spec,
    userId: input.userId,
    now: input.now,
    tz: zoneOf(input.after.tz, spec.reportingTimeZone),
    facts: input.after,
    state,
    planned: [],
    out: emptyStepResult(state),
  };

  const e = input.event;
  const plan = e !== null ? eventPlan(spec, e.name) : null;
  if (e !== null && plan !== null) applyEventEffects(ctx, e, plan);
  fireDueWaits(ctx);
  if (e !== null && plan !== null) {
    recordLateFollowUps(ctx, e, plan);
    recordConversions(ctx, e, plan);
    eventTriggers(ctx, input.before, e, plan);
  } else if (input.before !== null && input.before.stage !== input.after.stage) {
    timerStageTriggers(ctx, input.before, input.after);
  }

  if (ctx.planned.length > 0) {
    gatePlanned(ctx, input.budgets);
    pruneJourneyState(state, journeyIds, input.now, horizonMs);
  }
  ctx.out.nextDueAt = nextDueAt(state);
  return ctx.out;
}

function gatePlanned(ctx: DecideContext, budgets: ReadonlyMap<string, BudgetRemaining> | undefined): void {
  const { spec, state, now } = ctx;
  const planned = [...ctx.planned].sort(
    (a, b) => b.journey.priority - a.journey.priority || (a.journey.id < b.journey.id ? -1 : a.journey.id > b.journey.id ? 1 : 0) || a.step - b.step,
  );
  const sameStep: TouchRecord[] = [];
  const spent = new Map<string, number>();
  const budgetDay = dayNumber(now, spec.reportingTimeZone);
  const budgetDayOf = (ms: number): number => dayNumber(ms, spec.reportingTimeZone);
  for (const p of planned) {
    const { journey, entry } = p;
    const step = journey.steps[p.step]!;
    const variant = journey.variants.find((v) => v.id === entry.variant);
    const touchId = touchIdOf({ journeyId: journey.id, stepId: step.id, userId: ctx.userId, occurrence: entry.occurrence });
    const gate = gateTouch(spec.policy, {
      journey,
      channels: step.channels,
      group: entry.group,
      sendAt: p.sendAt,
      tz: ctx.tz,
      consent: state.consent,
      history: state.history,
      sameStep,
      budget: remaining(journey, budgets, spent),
      budgetDayOf,
    });
    const decision: TouchDecision = {
      touchId,
      userId: ctx.userId,
      journeyId: journey.id,
      stepId: step.id,
      occurrence: entry.occurrence,
      channel: gate.channel,
      template: step.template ?? variant?.template ?? journey.template,
      variant: entry.variant,
      group: entry.group,
      triggerEventId: entry.triggerEventId,
      triggeredAt: now,
      sendAt: gate.sendAt,
      attributes: Object.fromEntries(journey.attributes.map((a) => [a, Object.prototype.hasOwnProperty.call(ctx.facts.traits, a) ? ctx.facts.traits[a]! : null])),
      outcome: gate.outcome,
      reason: gate.reason,
      detail: gate.detail,
      cost: gate.cost,
      budgetDay,
      priority: journey.priority,
    };
    record(ctx.out, 'touches', decision);
    if (gate.outcome !== 'send' && gate.outcome !== 'defer') continue;
    if (!journey.ignoreCaps) sameStep.push({ at: gate.sendAt, channel: gate.channel, journeyId: journey.id, touchId });
    entry.lastTouch = { at: gate.sendAt, channel: gate.channel, stepId: step.id };
    state.lastTouchByChannel[gate.channel] = Math.max(state.lastTouchByChannel[gate.channel] ?? 0, gate.sendAt);
    if (gate.sendAt > now) entry.pending.push({ touchId, sendAt: gate.sendAt });
    if (gate.cost > 0) spent.set(journey.id, (spent.get(journey.id) ?? 0) + gate.cost);
  }
  state.history.push(...sameStep);
}

/** The budget left for a journey after what this call already spent; null without a budget. */
function remaining(journey: JourneySpec, budgets: ReadonlyMap<string, BudgetRemaining> | undefined, spent: ReadonlyMap<string, number>): BudgetRemaining | null {
  const b = journey.budget;
  if (b === null) return null;
  const given = budgets?.get(journey.id);
  const used = spent.get(journey.id) ?? 0;
  const total = given?.total ?? b.total;
  const today = given?.today ?? b.perDay;
  const left: BudgetRemaining = { total: total === null ? null : total - used, today: today === null ? null : today - used };
  if (given?.day !== undefined) left.day = given.day;
  return left;
}

interface Derived {
  journeyIds: ReadonlySet<string>;
  horizonMs: number;
}

// Computed once per compiled spec (the spec is frozen, so it cannot go stale).
const DERIVED = new WeakMap<RulesSpec, Derived>();

function derived(spec: RulesSpec): Derived {
  let d = DERIVED.get(spec);
  if (d === undefined) {
    d = { journeyIds: new Set(spec.journeys.map((j) => j.id)), horizonMs: historyHorizon(spec) };
    DERIVED.set(spec, d);
  }
  return d;
}

/** How far back the touch history must reach for every cap and the minimum gap. */
export function historyHorizon(spec: RulesSpec): number {
  let horizon = spec.policy.minGapMs ?? 0;
  for (const cap of spec.policy.caps) {
    const w = cap.window;
    const ms = w.kind === 'rolling' ? w.ms : w.period === 'day' ? 2 * DAY_MS : w.period === 'week' ? 8 * DAY_MS : 32 * DAY_MS;
    horizon = Math.max(horizon, ms);
  }
  return horizon;
}
