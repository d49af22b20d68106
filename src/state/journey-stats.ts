import type { StateQueries } from './queries.js';
import { journeyHash } from './journey-step.js';
import { liftOf, rateOf, type Lift } from './lift.js';

export interface GroupStats {
  users: number;
  conversions: number;
  conversionRate: number;
}

export interface JourneyStats {
  journeyId: string;
  /** Touch decisions by outcome: send, defer, suppress, holdout. */
  decisions: Record<string, number>;
  /** Every decision's reason code, counted. */
  reasons: Record<string, number>;
  /** Triggers that did not enter the journey, by reason (re-entry, conditions, stale...). */
  skipped: Record<string, number>;
  cancelled: Record<string, number>;
  lateFollowUps: number;
  /**
   * What the journey's touches were charged: the budget ledger, charged atomically when a touch
   * is about to be sent, so it counts what was paid for, not what was decided (a decided touch
   * can still be refused at send: budget spent by then, an opt-out, an exit). null when the
   * caller did not read the ledger.
   */
  cost: number | null;
  /** Cost of the touches decided to send or defer: what the decisions expected to charge. */
  costDecided: number;
  /** Intent to treat: users by the group they were assigned on entry, delivered or not. */
  variants: Record<string, GroupStats>;
  holdout: GroupStats;
  globalHoldout: GroupStats;
  /** All variants together against the journey's holdout. */
  lift: Lift | null;
}

/**
 * Reads a journey's counters from every lane (they are committed with the state, so they are
 * exactly once) and derives rates and lift.
 */
export async function journeyStats(queries: StateQueries, journeyId: string, ledger?: ChargedCost): Promise<JourneyStats> {
  const [totals, charged] = await Promise.all([queries.hashTotals(journeyHash(journeyId)), ledger?.charged(journeyId) ?? null]);
  return statsFromCounters(journeyId, totals, charged);
}

/** What a journey's touches were charged in all (touches/budget-ledger.ts). */
export interface ChargedCost {
  charged(journeyId: string): Promise<number>;
}

/** Pure: the stats of a journey from its summed counter fields and its charged cost. */
export function statsFromCounters(journeyId: string, totals: ReadonlyMap<string, number>, charged: number | null = null): JourneyStats {
  const pick = (prefix: string): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const [field, n] of totals) if (field.startsWith(prefix)) out[field.slice(prefix.length)] = n;
    return out;
  };
  const entered = pick('entered:');
  const converted = pick('converted:');
  const groups = new Map<string, { group: string; variant: string; users: number; conversions: number }>();
  for (const [key, n] of Object.entries(entered)) groupOf(groups, key).users += n;
  for (const [key, n] of Object.entries(converted)) groupOf(groups, key).conversions += n;
  const stats = (users: number, conversions: number): GroupStats => ({ users, conversions, conversionRate: rateOf({ users, conversions }) });
  const variants: Record<string, GroupStats> = {};
  let treated = { users: 0, conversions: 0 };
  let holdout = { users: 0, conversions: 0 };
  let global = { users: 0, conversions: 0 };
  for (const g of groups.values()) {
    if (g.group === 'variant') {
      variants[g.variant === '' ? 'default' : g.variant] = stats(g.users, g.conversions);
      treated = { users: treated.users + g.users, conversions: treated.conversions + g.conversions };
    } else if (g.group === 'holdout') holdout = { users: holdout.users + g.users, conversions: holdout.conversions + g.conversions };
    else global = { users: global.users + g.users, conversions: global.conversions + g.conversions };
  }
  return {
    journeyId,
    decisions: pick('outcome:'),
    reasons: pick('reason:'),
    skipped: pick('skipped:'),
    cancelled: pick('cancelled:'),
    lateFollowUps: totals.get('late_follow_up') ?? 0,
    cost: charged,
    costDecided: totals.get('cost') ?? 0,
    variants,
    holdout: stats(holdout.users, holdout.conversions),
    globalHoldout: stats(global.users, global.conversions),
    lift: liftOf(treated, holdout),
  };
}

function groupOf(groups: Map<string, { group: string; variant: string; users: number; conversions: number }>, key: string) {
  const i = key.indexOf(':');
  const group = i < 0 ? key : key.slice(0, i);
  const variant = i < 0 ? '' : key.slice(i + 1);
  let g = groups.get(key);
  if (g === undefined) groups.set(key, (g = { group, variant, users: 0, conversions: 0 }));
  return g;
}
