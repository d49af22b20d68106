import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/**
 * Label values known in advance, exported at 0 from the start: a series that appears only on
 * its first increment makes `rate()` blind to that first increment and leaves dashboards and
 * alerts with "no data" instead of 0 (Prometheus' instrumentation guide: avoid missing metrics).
 * Values outside these lists still count; they just appear on first use. (Dead-letter codes are
 * not listed: two dozen zero series per instance for events that are rare by design; the
 * dashboards fall back to 0 where they have none.)
 */
export const COMMIT_OUTCOMES = ['committed', 'stale-epoch', 'state-lost', 'already-applied'] as const;
export const IO_OPERATIONS = ['claim', 'load', 'dead-letter', 'commit', 'fence', 'timer-sweep'] as const;

/**
 * Metrics of the streaming state core. Updated once per batch, never per event (a labelled
 * prom-client call costs ~0.4 µs; per event that would be a visible share of the budget).
 * Labels come from small fixed sets: error codes, outcomes, stages — never user ids.
 */
export class PipelineMetrics {
  readonly eventsConsumed: Counter;
  readonly eventsApplied: Counter;
  readonly eventsInvalid: Counter<'code'>;
  readonly eventsLate: Counter;
  readonly eventsDuplicate: Counter;
  readonly eventsClamped: Counter;
  readonly batchSize: Histogram;
  readonly eventToCommit: Histogram;
  readonly commitDuration: Histogram;
  readonly commitOutcomes: Counter<'outcome'>;
  readonly redisErrors: Counter<'operation'>;
  readonly timersFired: Counter;
  readonly timersPoisoned: Counter;
  readonly timerLag: Gauge;
  readonly timerBacklog: Gauge;
  readonly transitions: Counter<'to'>;
  readonly lanes: Gauge;
  readonly inFlightBatches: Gauge;
  /** Per assigned partition; a revoked partition's series is removed, so the label set stays bounded by the partition count. */
  readonly consumerLag: Gauge<'partition'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.eventsConsumed = new Counter({ name: 'nudge_events_consumed_total', help: 'Events read from the events topic.', registers });
    this.eventsApplied = new Counter({ name: 'nudge_events_applied_total', help: 'Events applied to user state (valid, not late, not duplicate).', registers });
    this.eventsInvalid = new Counter({
      name: 'nudge_events_invalid_total',
      help: 'Events sent to the dead-letter topic, by error code.',
      labelNames: ['code'],
      registers,
    });
    this.eventsLate = new Counter({ name: 'nudge_events_late_total', help: 'Events older than allowedLateness behind their lane stream time; they change nothing.', registers });
    this.eventsDuplicate = new Counter({ name: 'nudge_events_duplicate_total', help: 'Events whose id the user had just seen (producer retries).', registers });
    this.eventsClamped = new Counter({ name: 'nudge_events_clamped_total', help: 'Events more than maxFutureSkew ahead of the wall clock, clamped to it.', registers });
    this.batchSize = new Histogram({
      name: 'nudge_batch_size_events',
      help: 'Events per lane batch.',
      buckets: [1, 10, 50, 100, 250, 500, 1000],
      registers,
    });
    this.eventToCommit = new Histogram({
      name: 'nudge_event_to_commit_seconds',
      help: 'From the broker timestamp of a batch’s oldest event to its state commit (an upper bound for every event of the batch).',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.commitDuration = new Histogram({
      name: 'nudge_commit_duration_seconds',
      help: 'Duration of the one-script commit of a batch.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers,
    });
    this.commitOutcomes = new Counter({
      name: 'nudge_commits_total',
      help: 'Batch commits by outcome: committed, stale-epoch (fenced zombie), state-lost (Redis lost acknowledged writes; the lane is re-read), already-applied (replay).',
      labelNames: ['outcome'],
      registers,
    });
    this.redisErrors = new Counter({
      name: 'nudge_io_retries_total',
      help: 'Redis or Kafka calls of a lane that failed and were retried (the lane pauses meanwhile), by operation.',
      labelNames: ['operation'],
      registers,
    });
    this.timersFired = new Counter({ name: 'nudge_timers_fired_total', help: 'User timers handled by the sweep.', registers });
    this.timersPoisoned = new Counter({
      name: 'nudge_timers_poisoned_total',
      help: 'User timers the state step threw on (NUDGE_TIMER_POISON); each is put off by an hour and the lane moves on.',
      registers,
    });
    this.timerLag = new Gauge({ name: 'nudge_timer_lag_seconds', help: 'How far behind its due time the oldest due timer is, at the last sweep.', registers });
    this.timerBacklog = new Gauge({ name: 'nudge_timer_backlog', help: 'Timers due and not yet handled, at the last sweep.', registers });
    this.transitions = new Counter({ name: 'nudge_lifecycle_transitions_total', help: 'Lifecycle stage changes recorded, by new stage.', labelNames: ['to'], registers });
    this.lanes = new Gauge({ name: 'nudge_lanes_assigned', help: 'Partitions (lanes) this instance owns.', registers });
    this.inFlightBatches = new Gauge({ name: 'nudge_batches_in_flight', help: 'Batches accepted and not yet committed.', registers });
    this.consumerLag = new Gauge({
      name: 'nudge_consumer_lag',
      help:
        'Messages of an assigned partition not yet applied: the high watermark minus the group’s committed offset (committed only after ' +
        'the Redis commit), asked of the broker every few seconds. With no committed offset yet, every retained message.',
      labelNames: ['partition'],
      registers,
    });
    for (const outcome of COMMIT_OUTCOMES) this.commitOutcomes.inc({ outcome }, 0);
    for (const operation of IO_OPERATIONS) this.redisErrors.inc({ operation }, 0);
  }
}
