import { touchIdOf } from './assignment.js';
import { consentFor } from './consent.js';
import type { JourneyUserState } from './journey-state.js';
import type { SendReason } from './reasons.js';
import type { PolicySpec } from './rules-spec.js';

/** The touch as the worker sees it: the part of the job the check reads. */
export interface TouchAtSend {
  touchId: string;
  userId: string;
  journeyId: string;
  stepId: string;
  channel: string;
}

/**
 * The user-state part of the policy gate at send time (DESIGN §4: "evaluated at decision time
 * and again when the job is about to be sent"), pure: the worker reads the user's journey state
 * and asks. Null: nothing in the state stops the touch (the budget is charged after this).
 */
export function refusedAtSend(policy: PolicySpec, state: JourneyUserState | null | undefined, touch: TouchAtSend): SendReason | null {
  if (!consentFor(policy, state?.consent ?? {}, touch.channel).granted) return 'no_consent_at_send';
  // Called off when the user left the very entry this touch belongs to. Compared by identity
  // (the touch id derives from the entry's occurrence), not by time: the exit's time is event
  // time and the decision's is the wall clock, and mixing them let cancelled touches through
  // (regression: tests/integration/journeys-reference.test.ts, the exit race). This also stops
  // a touch decided from a step already in the outbox when the exit came (no pending record).
  const entry = state?.entries[touch.journeyId];
  if (entry?.exitedAt !== undefined && touchIdOf({ journeyId: touch.journeyId, stepId: touch.stepId, userId: touch.userId, occurrence: entry.occurrence }) === touch.touchId) {
    return 'exited_before_send';
  }
  // Called off by an exit and the user re-entered since: the entry above is the new one, so
  // only the recorded id says this touch was cancelled (regression: tests/unit/rules-send-time-check).
  if (state?.cancelled?.some((c) => c.touchId === touch.touchId)) return 'cancelled_before_send';
  return null;
}
