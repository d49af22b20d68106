import type { Redis } from 'ioredis';
import { touchKeys, type TouchKeys } from './keys.js';
import { withTouchScripts } from './scripts.js';

export interface BudgetLimits {
  /** Cost of one touch. */
  cost: number;
  /** Whole budget of the journey; null = none. */
  total: number | null;
  /** Budget per reporting-zone day; null = none. */
  perDay: number | null;
}

export type BudgetOutcome = 'reserved' | 'already-reserved' | 'budget_exhausted' | 'daily_budget_exhausted';

/**
 * Journey budgets, spent when a touch is about to be sent (DESIGN §4: "budgets that are never
 * overspent"). The decision step cannot guarantee that — lanes decide in parallel, each from
 * its own slot — so the charge is one atomic script on the journey's own key at send time,
 * remembered per touch id so a re-run of the job is not charged twice.
 */
export class BudgetLedger {
  private readonly keys: TouchKeys;

  constructor(
    private readonly redis: Redis,
    namespace: string,
    private readonly keepMs = 30 * 86_400_000,
  ) {
    this.keys = touchKeys(namespace);
  }

  async reserve(journeyId: string, touchId: string, limits: BudgetLimits, day: number): Promise<BudgetOutcome> {
    const code = await withTouchScripts(this.redis).nudgeReserveBudget(
      this.keys.budget(journeyId),
      this.keys.budgetReservation(journeyId, touchId),
      limits.cost,
      limits.total ?? '',
      limits.perDay ?? '',
      day,
      this.keepMs,
    );
    if (code === 1) return 'reserved';
    if (code === 2) return 'already-reserved';
    return code === -1 ? 'budget_exhausted' : 'daily_budget_exhausted';
  }

  /** What a journey's touches were charged in all: the stats' `cost`. */
  async charged(journeyId: string): Promise<number> {
    return Number((await this.redis.hget(this.keys.budget(journeyId), 'total')) ?? 0);
  }

  /** What a journey has spent in total and on `day`. */
  async spent(journeyId: string, day: number): Promise<{ total: number; today: number }> {
    const [total, today] = await this.redis.hmget(this.keys.budget(journeyId), 'total', `d:${day}`);
    return { total: Number(total ?? 0), today: Number(today ?? 0) };
  }
}
