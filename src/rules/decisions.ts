import type { AppEvent } from '../contract/event.js';
import type { Group } from './assignment.js';
import type { ConsentChange } from './consent.js';
import type { JourneyEntry, JourneyUserState, Wait } from './journey-state.js';
import type { BudgetRemaining } from './policy-gate.js';
import type { CancelReason, Outcome, SkipReason, TouchReason } from './reasons.js';
import type { JourneySpec, RulesSpec } from './rules-spec.js';
import type { PriorFacts, UserFacts } from './user-facts.js';

/** One call of `decideJourneys`: a user's event, or a timer tick (`event: null`). */
export interface JourneyInput {
  userId: string;
  /** The wall clock: judges the age of triggers and when timers are due. */
  now: number;
  /**
   * The user's facts before the event (null for a user never seen) and after it. Of `before` only
   * the stage, counters and streaks are read (PriorFacts): send times and conditions read `after`.
   */
  before: PriorFacts | null;
  after: UserFacts;
  /** The event as the state step applied it (a far-future time clamped); null on a timer tick. */
  event: AppEvent | null;
  /**
   * The user's journey state as stored; null = none yet. Not changed (the result has the new
   * one) unless `owned`.
   */
  state: JourneyUserState | null;
  /** The caller gives `state` away: it is changed in place and returned, not copied first. */
  owned?: boolean;
  /** Remaining budgets by journey id, from the budget ledger as read up to a second ago (BudgetSnapshot); absent = not read yet, assume nothing spent. */
  budgets?: ReadonlyMap<string, BudgetRemaining>;
}

/** A touch decision: sent, deferred, suppressed or held out, always with a reason. */
export interface TouchDecision {
  touchId: string;
  userId: string;
  journeyId: string;
  stepId: string;
  /** The entry's triggering event id or timer due time (part of the touch id). */
  occurrence: string;
  channel: string;
  template: string;
  /** "" when the journey has no variants. */
  variant: string;
  group: Group;
  /** "" for a timer-triggered entry. */
  triggerEventId: string;
  /** The wall clock at decision time. */
  triggeredAt: number;
  sendAt: number;
  /** The journey's listed traits (null when the user has none): the only user data in a payload. */
  attributes: Record<string, string | null>;
  outcome: Outcome;
  reason: TouchReason;
  detail: string;
  /** Charged against the journey budget if the commit accepts the touch (0 unless sent or deferred). */
  cost: number;
  /** The reporting-zone day number the cost counts against (budget per day). */
  budgetDay: number;
  priority: number;
}

export interface SkippedTrigger {
  journeyId: string;
  reason: SkipReason;
  occurrence: string;
  detail: string;
}

export interface Cancellation {
  journeyId: string;
  reason: CancelReason;
  kind: 'absence_wait' | 'step_wait' | 'touch';
  /** For kind touch: the touch to call off (remove the delayed job, mark the ledger). */
  touchId: string;
  /** For an absence wait: the pairing key ("" without `by`). */
  key: string;
}

/** A conversion inside a journey's attribution window, counted from entry (intent to treat). */
export interface Conversion {
  journeyId: string;
  group: Group;
  variant: string;
  /** The entry's occurrence. */
  occurrence: string;
  enteredAt: number;
  at: number;
  eventId: string;
}

/** The awaited event arrived after its absence wait had fired (DESIGN: counted, not ignored). */
export interface LateFollowUp {
  journeyId: string;
  key: string;
  dueAt: number;
  at: number;
  eventId: string;
}

export interface JourneyStepResult {
  state: JourneyUserState;
  /** In gating order: highest priority first. */
  touches: readonly TouchDecision[];
  skipped: readonly SkippedTrigger[];
  cancellations: readonly Cancellation[];
  conversions: readonly Conversion[];
  lateFollowUps: readonly LateFollowUp[];
  consentChanges: readonly ConsentChange[];
  /** Waits added by this call (also in `state.waits`). */
  scheduled: readonly Wait[];
  /** When the user's next journey timer is due; null when none is pending. */
  nextDueAt: number | null;
}

type ResultList = 'touches' | 'skipped' | 'cancellations' | 'conversions' | 'lateFollowUps' | 'consentChanges' | 'scheduled';

// Shared by every result until something is recorded: most calls record nothing, and seven
// fresh lists per event were a third of the journey step's garbage. The result's lists are
// typed readonly, so only `record` writes them; frozen as well, so a cast around that still
// fails at run time instead of leaking into every other result.
const NOTHING: readonly never[] = Object.freeze([]);

/** A result whose lists are all empty (shared until `record` adds to one). */
export function emptyStepResult(state: JourneyUserState): JourneyStepResult {
  return { state, touches: NOTHING, skipped: NOTHING, cancellations: NOTHING, conversions: NOTHING, lateFollowUps: NOTHING, consentChanges: NOTHING, scheduled: NOTHING, nextDueAt: null };
}

/** Adds to one of a result's lists: the way every decision module writes its output. */
export function record<K extends ResultList>(out: JourneyStepResult, list: K, item: JourneyStepResult[K][number]): void {
  // The one place a result list is written: a fresh array replaces the shared empty one.
  const items = out[list] as Array<JourneyStepResult[K][number]>;
  if ((items as readonly unknown[]) === NOTHING) (out as unknown as Record<K, Array<JourneyStepResult[K][number]>>)[list] = [item];
  else items.push(item);
}

/** A step about to be gated. */
export interface PlannedStep {
  journey: JourneySpec;
  step: number;
  entry: JourneyEntry;
  sendAt: number;
}

/** What the decision modules share during one call. */
export interface DecideContext {
  spec: RulesSpec;
  userId: string;
  now: number;
  /** The user's zone for local times. */
  tz: string;
  facts: UserFacts;
  state: JourneyUserState;
  out: JourneyStepResult;
  planned: PlannedStep[];
}
