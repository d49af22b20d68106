import type { Logger } from '../log.js';
import type { BudgetLedger } from './budget-ledger.js';

/** A journey's budget as configured (cost units); null = no limit for that period. */
export interface BudgetLimit {
  journeyId: string;
  total: number | null;
  perDay: number | null;
}

/** What is left of one journey's budget; null = no limit for that period. */
export interface BudgetLeft {
  total: number | null;
  today: number | null;
  /** The reporting-zone day `today` is for. */
  day: number;
}

export interface BudgetSnapshotOptions {
  ledger: Pick<BudgetLedger, 'spent'>;
  limits: readonly BudgetLimit[];
  /** The reporting-zone day number of a time (the ledger's per-day field). */
  dayOf: (ms: number) => number;
  clock: () => number;
  logger: Logger;
  /** How often the spend is re-read. @default 1000 */
  intervalMs?: number;
}

/**
 * What the decision step knows of the journeys' budgets (DESIGN §3: the gate at decision time
 * includes the budget): the ledger's spend, re-read every second, so a journey whose budget is
 * spent stops deciding touches it could not pay for (reason budget_total / budget_daily)
 * instead of enqueuing jobs the workers then refuse. It is only a view: lanes decide in
 * parallel from a snapshot up to a second old, so the charge at send time (BudgetLedger, one
 * atomic script) stays what keeps a budget from being overspent.
 */
export class BudgetSnapshot {
  private left: ReadonlyMap<string, BudgetLeft> | undefined;
  private timer: NodeJS.Timeout | null = null;
  private failing = false;
  private reading = false;

  constructor(private readonly o: BudgetSnapshotOptions) {}

  /** The latest view by journey id; undefined before the first read (the gate then assumes nothing spent). */
  remaining(): ReadonlyMap<string, BudgetLeft> | undefined {
    return this.left;
  }

  async refresh(): Promise<void> {
    const day = this.o.dayOf(this.o.clock());
    const left = new Map<string, BudgetLeft>();
    for (const b of this.o.limits) {
      const spent = await this.o.ledger.spent(b.journeyId, day);
      left.set(b.journeyId, { total: b.total === null ? null : b.total - spent.total, today: b.perDay === null ? null : b.perDay - spent.today, day });
    }
    this.left = left;
  }

  start(): void {
    if (this.o.limits.length === 0 || this.timer !== null) return;
    const tick = () => {
      // One read at a time: with Redis down a read waits, and ticks must not pile up behind it.
      if (this.reading) return;
      this.reading = true;
      this.refresh().finally(() => (this.reading = false)).then(
        () => {
          if (this.failing) this.o.logger.info('journey budgets readable again');
          this.failing = false;
        },
        (err: unknown) => {
          if (this.timer === null) return; // stopped: the connection was closed under the read
          // The last view stays; the send-time charge still guards the budget.
          if (!this.failing) this.o.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'cannot read journey budgets; decisions use the last known spend until Redis answers');
          this.failing = true;
        },
      );
    };
    tick();
    this.timer = setInterval(tick, this.o.intervalMs ?? 1_000);
    this.timer.unref();
  }

  /**
   * Stops re-reading. A read in flight is not awaited (with Redis down it would wait for ever);
   * it ends when the connection is closed, without a warning.
   */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
