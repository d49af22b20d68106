import { Counter, Gauge, type Registry } from 'prom-client';
import { BoundedLabel } from './bounded-label.js';
import type { GroupCounts, JourneyReading } from './journey-reading.js';

const PERIODS = ['total', 'day'] as const;

/**
 * Journey metrics, read by a poller from the per-journey counters the commit script writes
 * with the state (so they are exactly once, and cluster-wide: every instance reports the same
 * totals — aggregate with `max`, never `sum`). The totals are exposed as counters, the way
 * node_exporter exposes kernel counters it reads: `rate()` and `increase()` apply, and a
 * wiped namespace shows as a counter reset.
 *
 * Labels: `journey` from the config; `outcome`, `reason`, `group` from the rules' fixed sets;
 * `variant` from the config. Never a user id.
 */
export class JourneyMetrics {
  readonly triggered: Counter<'journey'>;
  readonly entries: Counter<'journey' | 'group' | 'variant'>;
  readonly conversions: Counter<'journey' | 'group' | 'variant'>;
  readonly skips: Counter<'journey' | 'reason'>;
  readonly decisions: Counter<'journey' | 'outcome'>;
  readonly reasons: Counter<'journey' | 'reason'>;
  readonly cancellations: Counter<'journey' | 'reason'>;
  readonly lift: Gauge<'journey' | 'bound'>;
  readonly budgetLimit: Gauge<'journey' | 'period'>;
  readonly budgetSpent: Gauge<'journey' | 'period'>;
  readonly budgetRemaining: Gauge<'journey' | 'period'>;
  readonly budgetCost: Gauge<'journey'>;
  // Reason codes and variants come back as hash fields: bounded against strays (one cap per
  // label across journeys; the real sets are a dozen reasons and a few variants).
  private readonly reasonLabel = new BoundedLabel(64);
  private readonly variantLabel = new BoundedLabel(64);
  private readonly outcomeLabel = new BoundedLabel(16);

  constructor(registry: Registry) {
    const registers = [registry];
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) => new Counter<L>({ name, help, labelNames, registers });
    const gauge = <L extends string>(name: string, help: string, labelNames: L[]) => new Gauge<L>({ name, help, labelNames, registers });
    this.triggered = counter('nudge_journey_triggered_total', 'Journey triggers that fired: users who entered plus triggers skipped.', ['journey']);
    this.entries = counter(
      'nudge_journey_entries_total',
      'Users who entered a journey, by the group assigned on entry (variant, holdout, global_holdout) and variant (none for holdouts).',
      ['journey', 'group', 'variant'],
    );
    this.conversions = counter(
      'nudge_journey_conversions_total',
      'Entered users who converted within the attribution window, by group and variant (intent to treat: delivered or not).',
      ['journey', 'group', 'variant'],
    );
    this.skips = counter('nudge_journey_skips_total', 'Triggers that did not enter the journey, by reason (re-entry, conditions, stale...).', ['journey', 'reason']);
    this.decisions = counter('nudge_journey_decisions_total', 'Touch decisions by outcome: send, defer, suppress, holdout.', ['journey', 'outcome']);
    this.reasons = counter('nudge_journey_decision_reasons_total', 'Touch decisions by reason code (sent, quiet_hours_deferred, cap_channel, min_gap, budget_total...).', ['journey', 'reason']);
    this.cancellations = counter('nudge_journey_cancellations_total', 'Pending waits or steps called off, by reason (followed_by, exit).', ['journey', 'reason']);
    this.lift = gauge(
      'nudge_journey_lift_ratio',
      'Conversion rate of all variants minus that of the journey holdout (absolute lift), with its 95% interval: bound value, low, high. Absent until both groups have users.',
      ['journey', 'bound'],
    );
    this.budgetLimit = gauge('nudge_journey_budget_limit', 'Configured budget of a journey per period (total, day), in cost units.', ['journey', 'period']);
    this.budgetSpent = gauge('nudge_journey_budget_spent', 'Budget charged at send time, per period (total; day = today in the reporting zone).', ['journey', 'period']);
    this.budgetRemaining = gauge('nudge_journey_budget_remaining', 'Budget limit minus spent, per period with a limit; below cost per touch means exhausted.', ['journey', 'period']);
    this.budgetCost = gauge('nudge_journey_budget_cost_per_touch', 'Cost charged per touch sent, for journeys with a budget.', ['journey']);
  }

  /** Replaces every series at once (synchronously: a scrape never sees half a reading). */
  apply(readings: readonly JourneyReading[]): void {
    for (const m of [this.triggered, this.entries, this.conversions, this.skips, this.decisions, this.reasons, this.cancellations]) m.reset();
    for (const m of [this.lift, this.budgetLimit, this.budgetSpent, this.budgetRemaining, this.budgetCost]) m.reset();
    for (const r of readings) this.applyOne(r);
  }

  private applyOne({ journeyId: journey, counts: c, budget }: JourneyReading): void {
    const groups: [string, string, GroupCounts][] = [
      ...Object.entries(c.variants).map(([v, g]): [string, string, GroupCounts] => ['variant', this.variantLabel.value(v), g]),
      ['holdout', 'none', c.holdout],
      ['global_holdout', 'none', c.globalHoldout],
    ];
    let entered = 0;
    for (const [group, variant, g] of groups) {
      this.entries.inc({ journey, group, variant }, g.users);
      this.conversions.inc({ journey, group, variant }, g.conversions);
      entered += g.users;
    }
    let skipped = 0;
    for (const [reason, n] of Object.entries(c.skipped)) {
      this.skips.inc({ journey, reason: this.reasonLabel.value(reason) }, n);
      skipped += n;
    }
    this.triggered.inc({ journey }, entered + skipped);
    for (const [outcome, n] of Object.entries(c.decisions)) this.decisions.inc({ journey, outcome: this.outcomeLabel.value(outcome) }, n);
    for (const [reason, n] of Object.entries(c.reasons)) this.reasons.inc({ journey, reason: this.reasonLabel.value(reason) }, n);
    for (const [reason, n] of Object.entries(c.cancelled)) this.cancellations.inc({ journey, reason: this.reasonLabel.value(reason) }, n);
    if (c.lift !== null) {
      const { value, low, high } = c.lift.absolute;
      this.lift.set({ journey, bound: 'value' }, value);
      this.lift.set({ journey, bound: 'low' }, low);
      this.lift.set({ journey, bound: 'high' }, high);
    }
    if (budget === null) return;
    this.budgetCost.set({ journey }, budget.costPerTouch);
    for (const period of PERIODS) {
      const limit = budget.limit[period];
      this.budgetSpent.set({ journey, period }, budget.spent[period]);
      if (limit === null) continue;
      this.budgetLimit.set({ journey, period }, limit);
      this.budgetRemaining.set({ journey, period }, Math.max(0, limit - budget.spent[period]));
    }
  }
}
