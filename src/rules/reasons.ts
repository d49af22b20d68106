/**
 * Every reason a journey decision can carry: a fixed set, because each is a metric label
 * (counted per journey) and a field operators filter on. Add codes, never rename them.
 *
 * - Touch outcomes (`TouchDecision.reason`): why a decided touch is sent, deferred, suppressed
 *   or held out. The gate checks in this order: holdout, consent, quiet hours, caps, minimum
 *   gap, budget.
 * - Skips (`SkippedTrigger.reason`): a trigger fired but the user did not enter the journey.
 * - Cancellations (`Cancellation.reason`): something pending was called off.
 */
export const TOUCH_REASONS = {
  sent: 'Passed every check; sent at sendAt.',
  quiet_hours_deferred: 'Due inside quiet hours in the user\'s zone; sendAt moved to their end.',
  holdout: 'The user is in the journey\'s holdout: no touch, counted for lift.',
  global_holdout: 'The user is in the global holdout: no touch, counted for lift.',
  no_consent: 'No consent recorded for the channel and the channel\'s default is denied.',
  opted_out: 'The user opted out of the channel.',
  quiet_hours: 'Due inside quiet hours and the journey drops rather than defers.',
  cap_channel: 'A frequency cap on this channel is reached (detail: the cap).',
  cap_all_channels: 'A cross-channel frequency cap is reached (detail: the cap).',
  min_gap: 'Another touch is closer than policy.minGap.',
  priority_conflict: 'A higher-priority touch decided at the same time took the last slot of a cap or the gap.',
  budget_total: 'The journey\'s total budget cannot pay for the touch.',
  budget_daily: 'The journey\'s budget for the day (reporting zone) cannot pay for the touch.',
} as const;

export const SKIP_REASONS = {
  stale_event: 'The event is older than time.maxTriggerAge by the wall clock (a backfill or a late event).',
  stale_timer: 'The timer was due more than time.maxTriggerAge ago (the engine was down or behind).',
  conditions_not_met: 'A condition does not hold (detail: which).',
  device_signups: 'A deviceSignups condition does not hold: too many sign-ups came from the user\'s sign-up device around their own (a referral farm); withheld (detail: which condition).',
  reentry_never: 'The user entered before and the journey has reEntry: never.',
  reentry_cooldown: 'The user entered within the journey\'s re-entry cool-down.',
  already_in_journey: 'The user is still in the journey (a step or a touch is pending).',
  wait_limit: 'Too many waits were pending for the user; the oldest was dropped.',
} as const;

export const CANCEL_REASONS = {
  followed_by: 'The awaited event arrived in time: the absence wait ends without a touch.',
  exit: 'An exit event ended the journey for the user.',
} as const;

/**
 * Why a worker did not send a decided touch (the job completes as `suppressed` with this
 * reason): the policy gate again at send time, with the state and budget of that moment.
 */
export const SEND_REASONS = {
  no_consent_at_send: 'The user withdrew consent for the channel after the decision.',
  exited_before_send: 'An exit event ended the touch\'s journey entry before its send time.',
  cancelled_before_send: 'An exit called the touch off before its send time (the user may have re-entered since).',
  journey_removed: 'The journey is no longer configured.',
  budget_exhausted: 'The journey\'s total budget was spent by the time of sending.',
  daily_budget_exhausted: 'The journey\'s budget for the day was spent by the time of sending.',
} as const;

export type TouchReason = keyof typeof TOUCH_REASONS;
export type SendReason = keyof typeof SEND_REASONS;
export type SkipReason = keyof typeof SKIP_REASONS;
export type CancelReason = keyof typeof CANCEL_REASONS;
export type Outcome = 'send' | 'defer' | 'suppress' | 'holdout';

/** The outcome each touch reason goes with. */
export const OUTCOME_OF: Readonly<Record<TouchReason, Outcome>> = {
  sent: 'send',
  quiet_hours_deferred: 'defer',
  holdout: 'holdout',
  global_holdout: 'holdout',
  no_consent: 'suppress',
  opted_out: 'suppress',
  quiet_hours: 'suppress',
  cap_channel: 'suppress',
  cap_all_channels: 'suppress',
  min_gap: 'suppress',
  priority_conflict: 'suppress',
  budget_total: 'suppress',
  budget_daily: 'suppress',
};
