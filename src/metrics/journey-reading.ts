/** Users of a group and how many of them converted (intent to treat). */
export interface GroupCounts {
  users: number;
  conversions: number;
}

/**
 * The part of a journey's stats the gauges show; `JourneyStats` from the state's read side is
 * one (metrics/ imports no layer, so the shape is restated here).
 */
export interface JourneyCounts {
  decisions: Record<string, number>;
  reasons: Record<string, number>;
  skipped: Record<string, number>;
  cancelled: Record<string, number>;
  variants: Record<string, GroupCounts>;
  holdout: GroupCounts;
  globalHoldout: GroupCounts;
  lift: { absolute: { value: number; low: number; high: number } } | null;
}

/** A journey as configured: its id and budget (a `JourneySpec` is one). */
export interface JourneyBudgetSpec {
  id: string;
  budget: { total: number | null; perDay: number | null; costPerTouch: number } | null;
}

export interface JourneySources {
  stats(journeyId: string): Promise<JourneyCounts>;
  /** What the journey spent in total and on `day` (a `BudgetLedger` is one). */
  spent(journeyId: string, day: number): Promise<{ total: number; today: number }>;
}

export interface BudgetReading {
  costPerTouch: number;
  /** Per period (`total`, `day`): the configured limit, null when there is none. */
  limit: { total: number | null; day: number | null };
  spent: { total: number; day: number };
}

export interface JourneyReading {
  journeyId: string;
  counts: JourneyCounts;
  /** Null when the journey has no budget or its touches cost nothing (nothing is charged). */
  budget: BudgetReading | null;
}

/** Reads every configured journey's counters and budget (two round trips per journey). */
export function readJourneys(sources: JourneySources, journeys: readonly JourneyBudgetSpec[], day: number): Promise<JourneyReading[]> {
  return Promise.all(
    journeys.map(async (j): Promise<JourneyReading> => {
      const b = j.budget !== null && j.budget.costPerTouch > 0 ? j.budget : null;
      const [counts, spent] = await Promise.all([sources.stats(j.id), b === null ? null : sources.spent(j.id, day)]);
      const budget: BudgetReading | null =
        b === null || spent === null
          ? null
          : { costPerTouch: b.costPerTouch, limit: { total: b.total, day: b.perDay }, spent: { total: spent.total, day: spent.today } };
      return { journeyId: j.id, counts, budget };
    }),
  );
}
