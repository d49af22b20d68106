import type { Group } from './assignment.js';
import { checkCaps } from './caps.js';
import { consentFor } from './consent.js';
import type { ConsentRecord, TouchRecord } from './journey-state.js';
import { quietHoursAt } from './quiet-hours.js';
import { OUTCOME_OF, type Outcome, type TouchReason } from './reasons.js';
import type { JourneySpec, PolicySpec } from './rules-spec.js';

/**
 * The policy gate (DESIGN §4): one pure decision per touch, with a reason. Checks, in order:
 * holdout, then per channel in the journey's order of preference consent, quiet hours, caps and
 * the minimum gap (the first channel that passes is used), then the journey's budget. The
 * same function serves at decision time and, given fresh inputs, at send time.
 */

/**
 * What is left of a journey's budget as the decision sees it: the budget ledger's spend read up
 * to about a second ago (the worker charges each touch atomically when it sends; this only
 * suppresses what clearly cannot be paid). null = no limit of that kind.
 */
export interface BudgetRemaining {
  total: number | null;
  today: number | null;
  /** The reporting-zone day `today` was read for; a touch sent on another day has that day's whole `perDay`. */
  day?: number;
}

export interface GateInput {
  journey: Pick<JourneySpec, 'quietHours' | 'ignoreCaps' | 'budget'>;
  /** In order of preference. */
  channels: readonly string[];
  group: Group;
  sendAt: number;
  /** The user's zone (the reporting zone when theirs is unknown). */
  tz: string;
  consent: Readonly<Record<string, ConsentRecord>>;
  /** The user's touches before this step. */
  history: readonly TouchRecord[];
  /** Touches accepted earlier in this same step (higher priority): a conflict with them is `priority_conflict`. */
  sameStep: readonly TouchRecord[];
  budget: BudgetRemaining | null;
  /** The reporting-zone day of a time: which day's budget a touch sent then counts against. */
  budgetDayOf?: (ms: number) => number;
}

export interface GateResult {
  outcome: Outcome;
  reason: TouchReason;
  /** Which cap, which channel's consent...; "" when there is nothing to add. */
  detail: string;
  /** The channel used; the first preference when nothing was sent. */
  channel: string;
  /** May be later than asked (quiet hours deferred). */
  sendAt: number;
  /** Charged against the journey's budget when sent; 0 otherwise. */
  cost: number;
}

export function gateTouch(policy: PolicySpec, input: GateInput): GateResult {
  const first = input.channels[0] ?? '';
  if (input.group !== 'variant') return result(input.group, '', first, input.sendAt, 0);
  let refused: GateResult | null = null;
  for (const channel of input.channels) {
    const r = gateChannel(policy, input, channel);
    if (r.outcome === 'send' || r.outcome === 'defer') return chargeBudget(input, r);
    refused ??= r;
  }
  return refused ?? result('no_consent', 'no channel', first, input.sendAt, 0);
}

function gateChannel(policy: PolicySpec, input: GateInput, channel: string): GateResult {
  const consent = consentFor(policy, input.consent, channel);
  if (!consent.granted) return result(consent.recorded ? 'opted_out' : 'no_consent', channel, channel, input.sendAt, 0);

  let sendAt = input.sendAt;
  let reason: TouchReason = 'sent';
  const quiet = quietHoursAt(policy.quietHours, channel, sendAt, input.tz);
  if (quiet.quiet) {
    if ((input.journey.quietHours ?? policy.quietHours?.action) === 'drop') return result('quiet_hours', '', channel, sendAt, 0);
    sendAt = quiet.endsAt;
    reason = 'quiet_hours_deferred';
  }

  if (!input.journey.ignoreCaps) {
    const all = input.sameStep.length > 0 ? [...input.history, ...input.sameStep] : input.history;
    const caps = checkCaps(policy, all, channel, sendAt, input.tz);
    if (!caps.ok) {
      const alone = input.sameStep.length > 0 && checkCaps(policy, input.history, channel, sendAt, input.tz).ok;
      return result(alone ? 'priority_conflict' : caps.reason, caps.detail, channel, sendAt, 0);
    }
  }
  return result(reason, '', channel, sendAt, 0);
}

function chargeBudget(input: GateInput, r: GateResult): GateResult {
  const b = input.journey.budget;
  if (b === null) return r;
  const cost = b.costPerTouch;
  const total = input.budget?.total ?? b.total;
  // A touch deferred past midnight (quiet hours, a delay) is paid from its send day's budget,
  // which nothing has spent yet as far as this view knows.
  const day = input.budget?.day;
  const sameDay = day === undefined || input.budgetDayOf === undefined || input.budgetDayOf(r.sendAt) === day;
  const today = sameDay ? (input.budget?.today ?? b.perDay) : b.perDay;
  if (b.total !== null && total !== null && total < cost) return result('budget_total', `${total} left`, r.channel, r.sendAt, 0);
  if (b.perDay !== null && today !== null && today < cost) return result('budget_daily', `${today} left today`, r.channel, r.sendAt, 0);
  return { ...r, cost };
}

function result(reason: TouchReason, detail: string, channel: string, sendAt: number, cost: number): GateResult {
  return { outcome: OUTCOME_OF[reason], reason, detail, channel, sendAt, cost };
}
