import { Subject, concatMap, groupBy, mergeMap, from, type Subscription } from 'rxjs';
import { LaneStateCache } from './lane-state-cache.js';
import { LaneSteps, type LaneState, type LaneStepsOptions } from './lane-steps.js';
import { Semaphore } from './semaphore.js';
import { settlesWithin } from './settles-within.js';
import type { PartitionBatch, RawMessage } from './types.js';

export interface LanesOptions extends LaneStepsOptions {
  /** Batches accepted and not yet committed, over all lanes. */
  maxInFlight?: number;
  /**
   * Users whose last committed state each lane keeps in memory (LaneStateCache), so its next
   * batches skip loading them; 0 = no cache. Off by default: on the shipped config draining a
   * 300k-event backlog (bench:pipeline, core variant, 3 interleaved runs each, 2026-12-07) 4,096
   * per lane cost 16.5 against 15.7 µs of Node CPU per event and ~70 MB more peak RSS — every
   * committed state it keeps survives the young generation and is promoted, which costs more
   * than the JSON.parse it saves (~1.3 µs per hit in-process); Redis CPU barely moved (-0.1 µs).
   * @default 0
   */
  cachedUsersPerLane?: number;
}

interface Lane extends LaneState {
  /** Resolves true when claimed, false when the claim was abandoned. */
  claimed: Promise<boolean>;
  timerBatchPending: boolean;
  /** Work accepted for this lane and not yet taken by a run, in submission order. */
  queue: Work[];
}

type Work =
  | { kind: 'events'; partition: number; batch: PartitionBatch; lane: Lane }
  | { kind: 'timers'; partition: number; userIds: string[]; lane: Lane };

/** What enters the RxJS lane: "run this lane's queue". Each submitted work emits one. */
interface Turn {
  partition: number;
  lane: Lane;
}

/**
 * Most messages one lane run takes from its queue: the event batches waiting there are merged
 * up to this size into one load, one decide and one commit. A lane that keeps up has one small
 * batch at a time and merges nothing (no added wait); a lane that fell behind pays one Redis
 * round trip pair and one state write per user for several batches instead of one per batch.
 * Bounded so one commit script stays short (Redis runs nothing else meanwhile).
 */
const MAX_MERGED_MESSAGES = 4_000;

/**
 * One ordered lane per assigned partition (DESIGN §3). Batches of a lane run one after the
 * other (RxJS `groupBy` + `concatMap`); lanes run side by side (`mergeMap`); the semaphore
 * bounds batches in flight over all lanes, and `submit()` only resolves once a batch has a
 * permit — the source awaits it, so a slow Redis stops reading from Kafka instead of filling
 * memory. Timer batches enter the same lane, so a user's events and timers never race.
 */
export class Lanes {
  private readonly lanes = new Map<number, Lane>();
  private readonly work$ = new Subject<Turn>();
  private readonly subscription: Subscription;
  private readonly permits: Semaphore;
  private readonly maxInFlight: number;
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  private readonly steps: LaneSteps;

  constructor(private readonly o: LanesOptions) {
    this.steps = new LaneSteps(o);
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

  /**
   * Opens a lane per partition and claims it in Redis (a new epoch). Resolves, once every claim
   * is done, with the offset each lane needs next: its fence + 1, or 0 when nothing was applied
   * yet. The source uses it to start reading where Redis stands (DESIGN §5); a lane whose claim
   * was abandoned (revoked meanwhile) is left out.
   */
  async assign(partitions: number[]): Promise<Map<number, number>> {
    const opened: Lane[] = [];
    for (const partition of partitions) {
      const lane: Lane = {
        partition,
        epoch: 0,
        fenceOffset: -1,
        streamTime: 0,
        claimed: Promise.resolve(false),
        revoked: false,
        timerBatchPending: false,
        cache: new LaneStateCache(this.o.cachedUsersPerLane ?? 0),
        queue: [],
      };
      lane.claimed = this.claim(lane);
      this.lanes.set(partition, lane);
      opened.push(lane);
    }
    this.o.metrics.lanes.set(this.lanes.size);
    const needed = new Map<number, number>();
    await Promise.all(
      opened.map(async (lane) => {
        if ((await lane.claimed) && !lane.revoked) needed.set(lane.partition, lane.fenceOffset + 1);
      }),
    );
    return needed;
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
    lane.queue.push({ kind: 'events', partition: batch.partition, batch, lane });
    this.work$.next({ partition: batch.partition, lane });
  }

  /** Feeds due timers of a lane into it; skipped while an earlier timer batch is pending. */
  async submitTimers(partition: number, userIds: string[]): Promise<boolean> {
    const lane = this.lanes.get(partition);
    if (!lane || lane.timerBatchPending || userIds.length === 0) return false;
    lane.timerBatchPending = true;
    await this.permits.acquire();
    this.enter();
    lane.queue.push({ kind: 'timers', partition, userIds, lane });
    this.work$.next({ partition, lane });
    return true;
  }

  /** Resolves when nothing is in flight. */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Waits up to `waitMs` for the batches in flight, then stops. Batches still in flight then
   * (an I/O step retrying while Redis or the broker is down) are abandoned: their lanes are
   * marked revoked, so they stop at their next failed attempt and commit nothing — the next
   * owner re-reads them. Resolves true when nothing had to be abandoned.
   */
  async close(waitMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    const drained = await settlesWithin(this.idle(), waitMs);
    if (!drained) this.abandon();
    this.work$.complete();
    this.subscription.unsubscribe();
    return drained;
  }

  /** Gives up every lane at once (a forced stop); see `close`. */
  abandon(): void {
    this.revoke([...this.lanes.keys()]);
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

  /** Resolves true once the lane is claimed, false when the claim was abandoned (revoked). */
  private async claim(lane: Lane): Promise<boolean> {
    const fence = await this.steps.retry('claim', lane, () => this.o.store.claim(lane.partition));
    if (!fence) return false;
    lane.epoch = fence.epoch;
    lane.fenceOffset = fence.offset;
    lane.streamTime = fence.streamTime;
    this.o.logger.info({ partition: lane.partition, epoch: fence.epoch, fenceOffset: fence.offset }, 'lane claimed');
    return true;
  }

  /**
   * One turn of a lane: takes the work at the head of its queue — a timer batch alone, or the
   * event batches there merged (MAX_MERGED_MESSAGES) — and processes it. A turn whose work an
   * earlier turn already took finds the queue empty and does nothing; each work's permit is
   * released by the turn that took it, once processed, so the in-flight bound is unchanged.
   */
  private async run(turn: Turn): Promise<void> {
    const lane = turn.lane;
    const taken = this.take(lane);
    if (taken.length === 0) return;
    const head = taken[0] as Work;
    try {
      if (!(await lane.claimed) || lane.revoked) return;
      if (head.kind === 'timers') await this.steps.processTimers(lane, head.userIds);
      else await this.steps.processEvents(lane, taken.length === 1 ? head.batch : merged(taken));
    } catch (err) {
      // Only a bug gets here (I/O errors are retried below); keep the lane alive and loud.
      this.o.logger.error({ partition: lane.partition, err: (err as Error).message }, 'lane batch failed');
    } finally {
      if (head.kind === 'timers') lane.timerBatchPending = false;
      for (let i = 0; i < taken.length; i++) this.leave();
    }
  }

  /** The head of the lane's queue: one timer batch, or consecutive event batches up to the bound. */
  private take(lane: Lane): Work[] {
    const head = lane.queue[0];
    if (head === undefined) return [];
    if (head.kind === 'timers') return lane.queue.splice(0, 1);
    let n = 0;
    let messages = 0;
    for (const w of lane.queue) {
      if (w.kind !== 'events' || (n > 0 && messages + w.batch.messages.length > MAX_MERGED_MESSAGES)) break;
      messages += w.batch.messages.length;
      n++;
    }
    return lane.queue.splice(0, n);
  }

}

/** Event batches of one partition, in offset order, as one batch. */
function merged(works: readonly Work[]): PartitionBatch {
  const messages: RawMessage[] = [];
  for (const w of works) if (w.kind === 'events') for (const m of w.batch.messages) messages.push(m);
  return { partition: (works[0] as Work).partition, messages };
}
