import type { Logger } from '../log.js';
import type { PipelineMetrics } from '../metrics/pipeline-metrics.js';
import type { LaneStore } from '../state/lane-store.js';
import type { Lanes } from './lanes.js';
import { settlesWithin } from './settles-within.js';

export interface TimerSweepOptions {
  lanes: Lanes;
  store: LaneStore;
  metrics: PipelineMetrics;
  logger: Logger;
  clock: () => number;
  /** How often owned lanes are swept; a timer fires at most this late (plus queueing). */
  intervalMs: number;
  /** Users per timer batch; the rest wait for the next sweep. */
  batchSize?: number;
}

/**
 * Feeds due timers (dormancy, churn, the end of `new`; later journey deadlines) into their
 * lanes by the wall clock, so a user goes dormant on time with no event arriving (DESIGN §3).
 * Only owned lanes are swept: a lane's timers move with its partition on a rebalance.
 */
export class TimerSweep {
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;

  constructor(private readonly o: TimerSweepOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (!this.sweeping) this.sweeping = this.sweepOnce().then(
          () => undefined,
          () => undefined,
        ).finally(() => (this.sweeping = null));
    }, this.o.intervalMs);
    this.timer.unref();
  }

  /** Stops sweeping; waits up to `waitMs` for a sweep under way (it may wait on a down Redis). */
  async stop(waitMs = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.sweeping) await settlesWithin(this.sweeping, waitMs);
  }

  /** One pass over the owned lanes; public so tests on virtual time can drive it. */
  async sweepOnce(): Promise<number> {
    const now = this.o.clock();
    let submitted = 0;
    let backlog = 0;
    let lag = 0;
    for (const partition of this.o.lanes.ownedPartitions()) {
      try {
        const [due, info] = await Promise.all([
          this.o.store.dueTimers(partition, now, this.o.batchSize ?? 1_000),
          this.o.store.timerBacklog(partition, now),
        ]);
        backlog += info.due;
        if (info.oldestDue !== null && info.oldestDue <= now) lag = Math.max(lag, now - info.oldestDue);
        if (due.length > 0 && (await this.o.lanes.submitTimers(partition, due))) submitted += due.length;
      } catch (err) {
        this.o.metrics.redisErrors.inc({ operation: 'timer-sweep' });
        this.o.logger.warn({ partition, err: (err as Error).message }, 'timer sweep failed; next sweep retries');
      }
    }
    this.o.metrics.timerBacklog.set(backlog);
    this.o.metrics.timerLag.set(lag / 1000);
    return submitted;
  }
}
