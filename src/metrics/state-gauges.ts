import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../log.js';
import { EngagementMetrics, readEngagement, type EngagementSource } from './engagement-metrics.js';
import { JourneyMetrics } from './journey-metrics.js';
import { readJourneys, type JourneyBudgetSpec, type JourneySources } from './journey-reading.js';
import { pollEvery } from './poll-every.js';

export interface StateGaugesOptions {
  registry: Registry;
  logger: Logger;
  /** Today's day number in the reporting zone (the engine's clock and zone). */
  today: () => number;
  /** Activity metric names from the config: the `metric` label's whole set. */
  activityMetrics: readonly string[];
  /** Configured journeys: the `journey` label's whole set. */
  journeys: readonly JourneyBudgetSpec[];
  engagement: EngagementSource;
  journeySources: JourneySources;
  /**
   * How often the gauges are read from Redis.
   * @default 15_000
   */
  intervalMs?: number;
}

const DEFAULT_INTERVAL_MS = 15_000;

/**
 * Engagement and journey gauges, read from Redis every `intervalMs` (not per event: they are
 * sums over all lanes, a few dozen small reads, and a dashboard refreshes every 15 s anyway).
 * A failed read keeps the last values and counts an error; the last-success timestamp lets an
 * alert tell stale gauges from quiet ones.
 */
export class StateGauges {
  readonly engagement: EngagementMetrics;
  readonly journeys: JourneyMetrics;
  private readonly pollDuration: Gauge;
  private readonly pollErrors: Counter;
  private readonly lastSuccess: Gauge;
  private stopLoop: (() => void) | null = null;
  private lastErrorLog = 0;

  constructor(private readonly o: StateGaugesOptions) {
    const registers = [o.registry];
    this.engagement = new EngagementMetrics(o.registry);
    this.journeys = new JourneyMetrics(o.registry);
    this.pollDuration = new Gauge({ name: 'nudge_state_poll_duration_seconds', help: 'Duration of the last read of the engagement and journey gauges from Redis.', registers });
    this.pollErrors = new Counter({ name: 'nudge_state_poll_errors_total', help: 'Reads of the engagement and journey gauges that failed (the gauges keep their last values).', registers });
    this.lastSuccess = new Gauge({
      name: 'nudge_state_poll_last_success_timestamp_seconds',
      help: 'When the engagement and journey gauges were last read successfully (Unix time).',
      registers,
    });
  }

  start(): void {
    if (this.stopLoop !== null) return;
    this.stopLoop = pollEvery(this.o.intervalMs ?? DEFAULT_INTERVAL_MS, () => this.pollOnce(), (err) => this.failed(err));
  }

  stop(): void {
    this.stopLoop?.();
    this.stopLoop = null;
  }

  /** Reads everything, then applies it in one synchronous step. */
  async pollOnce(): Promise<void> {
    const started = process.hrtime.bigint();
    const day = this.o.today();
    const [engagement, journeys] = await Promise.all([
      readEngagement(this.o.engagement, this.o.activityMetrics, day),
      readJourneys(this.o.journeySources, this.o.journeys, day),
    ]);
    this.engagement.apply(engagement);
    this.journeys.apply(journeys);
    this.pollDuration.set(Number(process.hrtime.bigint() - started) / 1e9);
    this.lastSuccess.set(Date.now() / 1000);
  }

  private failed(err: unknown): void {
    this.pollErrors.inc();
    // Once a minute at most: Redis being down is reported by the lanes already.
    if (Date.now() - this.lastErrorLog < 60_000) return;
    this.lastErrorLog = Date.now();
    this.o.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'reading the engagement and journey gauges failed; they keep their last values');
  }
}
