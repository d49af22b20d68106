import { Subject, concatMap, groupBy, mergeMap, from, type Subscription } from 'rxjs';
import type { AppEvent } from '../contract/event.js';
import { parseEvent, type EventLimits } from '../contract/validate.js';
import type { Logger } from '../log.js';
import type { PipelineMetrics } from '../metrics/pipeline-metrics.js';
import { applyEvents, applyTimers, type StepResult, type Transition } from '../state/decide.js';
import type { LaneStore } from '../state/lane-store.js';
import type { StateSpec } from '../state/spec.js';
import { Semaphore } from './semaphore.js';
import type { DeadLetter, DeadLetterSink, OffsetCommitter, PartitionBatch } from './types.js';

export interface LanesOptions {
  store: LaneStore;
  spec: StateSpec;
  limits: EventLimits;
  dlq: DeadLetterSink;
  offsets: OffsetCommitter;
  metrics: PipelineMetrics;
  logger: Logger;
  /** The wall clock; injected so tests run on virtual time. */
  clock: () => number;
  /** Batches accepted and not yet committed, over all lanes. */
  maxInFlight?: number;
  /** Called after each committed batch with its lifecycle transitions (journeys use them). */
  onTransitions?: (partition: number, transitions: Transition[]) => void;
}

interface Lane {
  partition: number;
  epoch: number;
  /** Last applied offset; messages at or below it are replays and are skipped. */
  fenceOffset: number;
  streamTime: number;
  claimed: Promise<void>;
  revoked: boolean;
  timerBatchPending: boolean;
}

type Work =
  | { kind: 'events'; partition: number; batch: PartitionBatch; lane: Lane }
  | { kind: 'timers'; partition: number; userIds: string[]; lane: Lane };

const MAX_RETRY_DELAY_MS = 5_000;

/**
 * One ordered lane per assigned partition (DESIGN §3). Batches of a lane run one after the
 * other (RxJS `groupBy` + `concatMap`); lanes run side by side (`mergeMap`); the semaphore
 * bounds batches in flight over all lanes, and `submit()` only resolves once a batch has a
 * permit — the source awaits it, so a slow Redis stops reading from Kafka instead of filling
 * memory. Timer batches enter the same lane, so a user's events and timers never race.
 */
export class Lanes {
  private readonly lanes = new Map<number, Lane>();
  private readonly work$ = new Subject<Work>();
  private readonly subscription: Subscription;
  private readonly permits: Semaphore;
  private readonly maxInFlight: number;
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly o: LanesOptions) {
    this.maxInFlight = o.maxInFlight ?? 8;
    this.permits = new Semaphore(this.maxInFlight);
    this.subscription = this.work$
      .pipe(
        groupBy((w) => w.partition),
        // One inner stream per partition: bounded by the partition count.
        mergeMap((lane$) => lane$.pipe(concatMap((w) => from(this.run(w))))),
      )
      .subscribe();
  }

  assign(partitions: number[]): void {
    for (const partition of partitions) {
      const lane: Lane = {
        partition,
        epoch: 0,
        fenceOffset: -1,
        streamTime: 0,
        claimed: Promise.resolve(),
        revoked: false,
        timerBatchPending: false,
      };
      lane.claimed = this.claim(lane);
      this.lanes.set(partition, lane);
    }
    this.o.metrics.lanes.set(this.lanes.size);
  }

  revoke(partitions: number[]): void {
    for (const p of partitions) {
      const lane = this.lanes.get(p);
      if (lane) lane.revoked = true;
      this.lanes.delete(p);
    }
    this.o.metrics.lanes.set(this.lanes.size);
  }

  ownedPartitions(): number[] {
    return [...this.lanes.keys()].sort((a, b) => a - b);
  }

  /** Resolves when the batch was accepted (a permit is free): the source's backpressure. */
  async submit(batch: PartitionBatch): Promise<void> {
    const lane = this.lanes.get(batch.partition);
    if (!lane) return; // revoked between consume and submit: the new owner reads it again
    await this.permits.acquire();
    this.enter();
    this.work$.next({ kind: 'events', partition: batch.partition, batch, lane });
  }

  /** Feeds due timers of a lane into it; skipped while an earlier timer batch is pending. */
  async submitTimers(partition: number, userIds: string[]): Promise<boolean> {
    const lane = this.lanes.get(partition);
    if (!lane || lane.timerBatchPending || userIds.length === 0) return false;
    lane.timerBatchPending = true;
    await this.permits.acquire();
    this.enter();
    this.work$.next({ kind: 'timers', partition, userIds, lane });
    return true;
  }

  /** Resolves when nothing is in flight. */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    await this.idle();
    this.work$.complete();
    this.subscription.unsubscribe();
  }

  private enter(): void {
    this.inFlight++;
    this.o.metrics.inFlightBatches.set(this.inFlight);
  }

  private leave(): void {
    this.inFlight--;
    this.o.metrics.inFlightBatches.set(this.inFlight);
    this.permits.release();
    if (this.inFlight === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async claim(lane: Lane): Promise<void> {
    const fence = await this.retry('claim', lane, () => this.o.store.claim(lane.partition));
    if (!fence) return;
    lane.epoch = fence.epoch;
    lane.fenceOffset = fence.offset;
    lane.streamTime = fence.streamTime;
    this.o.logger.info({ partition: lane.partition, epoch: fence.epoch, fenceOffset: fence.offset }, 'lane claimed');
  }

  private async run(w: Work): Promise<void> {
    try {
      await w.lane.claimed;
      if (w.lane.revoked) return;
      if (w.kind === 'events') await this.processEvents(w.lane, w.batch);
      else await this.processTimers(w.lane, w.userIds);
    } catch (err) {
      // Only a bug gets here (I/O errors are retried below); keep the lane alive and loud.
      this.o.logger.error({ partition: w.partition, err: (err as Error).message }, 'lane batch failed');
    } finally {
      if (w.kind === 'timers') w.lane.timerBatchPending = false;
      this.leave();
    }
  }

  private async processEvents(lane: Lane, batch: PartitionBatch): Promise<void> {
    const { metrics } = this.o;
    const messages = batch.messages.filter((m) => m.offset > lane.fenceOffset);
    metrics.eventsConsumed.inc(batch.messages.length);
    if (messages.length === 0) return;
    const first = (messages[0] as (typeof messages)[number]).offset;
    const last = (messages[messages.length - 1] as (typeof messages)[number]).offset;
    const now = this.o.clock();

    const events: AppEvent[] = [];
    const dead: DeadLetter[] = [];
    for (const m of messages) {
      const parsed = parseEvent(m.value ?? Buffer.alloc(0), this.o.limits, now);
      if (parsed.ok) events.push(parsed.event);
      else dead.push({ partition: m.partition, offset: m.offset, key: m.key ?? null, value: m.value, code: parsed.rejection.code, reason: parsed.rejection.message });
    }
    // Dead letters are acknowledged before the fence moves past them: a crash in between
    // re-reads the batch and sends them again (at least once) rather than losing them.
    if (dead.length > 0) {
      const sent = await this.retry('dead-letter', lane, () => this.o.dlq.send(dead).then(() => true));
      if (!sent) return;
      for (const d of dead) metrics.eventsInvalid.inc({ code: d.code });
    }

    const userIds = [...new Set(events.map((e) => e.userId))];
    const loaded = await this.retry('load', lane, () => this.o.store.loadUsers(lane.partition, userIds));
    if (!loaded) return;
    const result = applyEvents(events, loaded, lane.streamTime, now, this.o.spec);
    const committed = await this.commit(lane, first, last, result);
    if (!committed) return;
    metrics.batchSize.observe(messages.length);
    metrics.eventsApplied.inc(result.stats.applied);
    if (result.stats.late) metrics.eventsLate.inc(result.stats.late);
    if (result.stats.duplicates) metrics.eventsDuplicate.inc(result.stats.duplicates);
    if (result.stats.clamped) metrics.eventsClamped.inc(result.stats.clamped);
    const newest = messages[messages.length - 1]?.timestamp;
    if (typeof newest === 'number' && newest > 0) metrics.eventToCommit.observe(Math.max(0, Date.now() - newest) / 1000);
    this.o.offsets.commit(lane.partition, last + 1);
  }

  private async processTimers(lane: Lane, userIds: string[]): Promise<void> {
    const now = this.o.clock();
    const loaded = await this.retry('load', lane, () => this.o.store.loadUsers(lane.partition, userIds));
    if (!loaded) return;
    const result = applyTimers(userIds, loaded, now, this.o.spec);
    result.streamTime = lane.streamTime;
    if (await this.commit(lane, -1, -1, result)) this.o.metrics.timersFired.inc(result.stats.timersFired);
  }

  private async commit(lane: Lane, first: number, last: number, result: StepResult): Promise<boolean> {
    const started = process.hrtime.bigint();
    const outcome = await this.retry('commit', lane, () => this.o.store.commit(lane.partition, lane.epoch, first, last, result));
    if (!outcome) return false;
    this.o.metrics.commitDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    this.o.metrics.commitOutcomes.inc({ outcome });
    if (outcome === 'stale-epoch') {
      // Another member claimed the lane: this one is a zombie and must stop writing.
      lane.revoked = true;
      this.o.logger.warn({ partition: lane.partition, epoch: lane.epoch }, 'lane fenced off by a newer owner; abandoning its in-flight work');
      return false;
    }
    if (outcome === 'already-applied') {
      const fence = await this.retry('fence', lane, () => this.o.store.readFence(lane.partition));
      if (fence) lane.fenceOffset = fence.offset;
      return false;
    }
    if (first >= 0) lane.fenceOffset = last;
    lane.streamTime = Math.max(lane.streamTime, result.streamTime);
    for (const t of result.transitions) this.o.metrics.transitions.inc({ to: t.to });
    if (result.transitions.length > 0) this.o.onTransitions?.(lane.partition, result.transitions);
    return true;
  }

  /**
   * Retries an I/O step until it succeeds or the lane is revoked. A down Redis or broker
   * pauses the lane (and, through the permits, the source) — it never drops the batch.
   */
  private async retry<T>(operation: string, lane: Lane, fn: () => Promise<T>): Promise<T | null> {
    let delay = 100;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (lane.revoked) return null;
        this.o.metrics.redisErrors.inc({ operation });
        this.o.logger.warn(
          { partition: lane.partition, operation, err: (err as Error).message, retryInMs: delay },
          `${operation} failed; the lane pauses and retries (check that Redis and Kafka are reachable)`,
        );
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(MAX_RETRY_DELAY_MS, delay * 2);
      }
    }
  }
}
