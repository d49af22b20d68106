import { settlesWithin } from '../pipeline/settles-within.js';
import type { DeadLetter, DeadLetterSink, PartitionBatch, RawMessage } from '../pipeline/types.js';
import type { OutgoingMessage } from './event-producer.js';
import type { EventSink, EventSource } from './event-source.js';
import type { SourceListener } from './kafka-source.js';

export interface InProcessSourceOptions {
  /**
   * Partitions, each one ordered lane of the pipeline; a key always goes to the same one, so one
   * user's events stay in order (as Kafka keyed by user id). @default 4
   */
  partitions?: number;
  /** Largest batch handed to the pipeline at once. @default 500 */
  maxBatch?: number;
  /**
   * Messages a partition holds before `produce()` waits for the pipeline to take some: the
   * bound on memory, and the backpressure a producer feels. @default 5_000
   */
  maxQueued?: number;
  /** Stamps each message's timestamp (the broker's append time, in Kafka terms). @default Date.now */
  clock?: () => number;
}

/**
 * An event source inside the process (DESIGN §2.5, `nudge demo`): what a Kafka topic and a
 * consumer group member are to `nudge run`, without a broker. Producers (the load generator,
 * stdin, `POST /v1/events`) append encoded events keyed by user id; each partition is a FIFO
 * with offsets, drained by one loop that hands batches to the engine's `SourceListener` and
 * awaits `onBatch` before the next one — the same backpressure contract as `KafkaSource`, so
 * a slow Redis slows the producers instead of filling memory.
 *
 * Offsets: on start every partition is assigned at once, and numbering starts where the
 * listener says the partition's state stands (the lane's fence + 1), so a second demo on the
 * same Redis appends after what the first applied instead of being skipped as a replay.
 * `commit()` records how far the pipeline applied (lag and `drained()`); nothing is kept after
 * a batch is handed over — the queue is memory, not a log, and a crash loses what was queued.
 */
export class InProcessSource implements EventSource, EventSink {
  readonly partitions: number;
  private readonly maxBatch: number;
  private readonly maxQueued: number;
  private readonly clock: () => number;
  private readonly queues: RawMessage[][];
  /** Next offset to give out, per partition. */
  private readonly nextOffset: number[];
  /** Next offset the pipeline has not yet applied (what `commit` reported), per partition. */
  private readonly committed: number[];
  private readonly pumpWake: Array<(() => void) | null>;
  private readonly spaceWaiters: Array<Array<() => void>>;
  private drainWaiters: Array<() => void> = [];
  private pumps: Promise<void>[] = [];
  private running = false;
  private stopped = false;
  private listener: SourceListener | null = null;
  private markStarted!: () => void;
  private readonly started = new Promise<void>((resolve) => (this.markStarted = resolve));
  private produced = 0;

  constructor(options: InProcessSourceOptions = {}) {
    this.partitions = options.partitions ?? 4;
    this.maxBatch = options.maxBatch ?? 500;
    this.maxQueued = options.maxQueued ?? 5_000;
    this.clock = options.clock ?? Date.now;
    if (!Number.isInteger(this.partitions) || this.partitions < 1) throw new RangeError(`partitions must be a whole number of at least 1, got ${this.partitions}`);
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) throw new RangeError(`maxBatch must be a whole number of at least 1, got ${this.maxBatch}`);
    if (!Number.isInteger(this.maxQueued) || this.maxQueued < 1) throw new RangeError(`maxQueued must be a whole number of at least 1, got ${this.maxQueued}`);
    const each = <T>(make: () => T): T[] => Array.from({ length: this.partitions }, make);
    this.queues = each(() => []);
    this.nextOffset = each(() => 0);
    this.committed = each(() => 0);
    this.pumpWake = each(() => null);
    this.spaceWaiters = each(() => []);
  }

  /** The partition of a key: a stable hash, so one user's events share one ordered lane. */
  partitionOf(key: string | Buffer): number {
    return fnv1a(typeof key === 'string' ? Buffer.from(key, 'utf8') : key) % this.partitions;
  }

  async start(listener: SourceListener): Promise<void> {
    if (this.running || this.stopped) throw new Error('the in-process source starts once');
    this.listener = listener;
    const all = Array.from({ length: this.partitions }, (_, p) => p);
    const needed = (await listener.onAssigned(all)) ?? new Map<number, number>();
    for (const p of all) {
      const from = needed.get(p) ?? 0;
      this.nextOffset[p] = from;
      this.committed[p] = from;
    }
    this.running = true;
    this.pumps = all.map((p) => this.pump(p));
    this.markStarted();
  }

  /**
   * Appends one event (the encoded `AppEvent`) keyed by user id. Waits while the partition is
   * full, and until the source has started; rejects once it is stopped.
   */
  async produce(key: string, value: Uint8Array, timestampMs?: number): Promise<void> {
    if (!this.running) {
      if (this.stopped) throw new Error('the in-process source is stopped');
      await this.started;
      if (this.stopped) throw new Error('the in-process source is stopped');
    }
    const p = this.partitionOf(key);
    const queue = this.queues[p] as RawMessage[];
    while (queue.length >= this.maxQueued) {
      await new Promise<void>((resolve) => (this.spaceWaiters[p] as Array<() => void>).push(resolve));
      if (this.stopped) throw new Error('the in-process source is stopped');
    }
    const buf = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    const offset = this.nextOffset[p] as number;
    this.nextOffset[p] = offset + 1;
    queue.push({ partition: p, offset, key, value: buf, timestamp: timestampMs ?? this.clock() });
    this.produced++;
    this.pumpWake[p]?.();
  }

  /** `POST /v1/events` in the demo: resolves once every message is queued (in memory). */
  async sendAndWait(_topic: string, messages: OutgoingMessage[]): Promise<void> {
    for (const m of messages) {
      if (m.value === null || m.key === null) throw new Error('in-process messages need a key and a value');
      await this.produce(typeof m.key === 'string' ? m.key : m.key.toString('utf8'), m.value, m.timestampMs);
    }
  }

  commit(partition: number, nextOffset: number): void {
    if (partition < 0 || partition >= this.partitions) return;
    if (nextOffset > (this.committed[partition] as number)) this.committed[partition] = nextOffset;
    if (this.drainWaiters.length > 0 && this.lag() === 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Events produced and not yet applied by the pipeline (queued, in flight or being committed). */
  lag(): number {
    let lag = 0;
    for (let p = 0; p < this.partitions; p++) lag += (this.nextOffset[p] as number) - (this.committed[p] as number);
    return lag;
  }

  /** Events produced since start. */
  producedCount(): number {
    return this.produced;
  }

  /** Resolves true once everything produced so far is applied, false after `waitMs`. */
  drained(waitMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    if (this.lag() === 0) return Promise.resolve(true);
    return settlesWithin(new Promise<void>((resolve) => this.drainWaiters.push(resolve)), waitMs);
  }

  isConnected(): boolean {
    return this.running;
  }

  assignedPartitions(): number[] {
    return this.running ? Array.from({ length: this.partitions }, (_, p) => p) : [];
  }

  /** Nothing to disconnect: reading stopped is stopped. */
  stopReading(waitMs = Number.POSITIVE_INFINITY): Promise<void> {
    return this.stop(waitMs);
  }

  /**
   * Stops handing out batches and waits up to `waitMs` for the ones being handed over. Messages
   * still queued are dropped (there is no log to re-read them from); producers waiting for room
   * are released with an error.
   */
  async stop(waitMs = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.running = false;
    this.markStarted();
    for (let p = 0; p < this.partitions; p++) {
      this.pumpWake[p]?.();
      this.releaseSpace(p);
    }
    await settlesWithin(Promise.all(this.pumps), waitMs);
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  private async pump(p: number): Promise<void> {
    const queue = this.queues[p] as RawMessage[];
    while (this.running) {
      if (queue.length === 0) {
        await new Promise<void>((resolve) => (this.pumpWake[p] = resolve));
        this.pumpWake[p] = null;
        continue;
      }
      const messages = queue.splice(0, this.maxBatch);
      this.releaseSpace(p);
      const batch: PartitionBatch = { partition: p, messages };
      try {
        // Awaited: the pipeline takes the next batch of this partition only once it accepted this one.
        await (this.listener as SourceListener).onBatch(batch);
      } catch {
        // The lanes never reject (they retry I/O); if a listener does, the batch is lost and the
        // partition goes on, as a consumer would after a failed handler.
      }
    }
  }

  private releaseSpace(p: number): void {
    const waiters = this.spaceWaiters[p] as Array<() => void>;
    if (waiters.length === 0) return;
    this.spaceWaiters[p] = [];
    for (const w of waiters) w();
  }
}

/**
 * The demo's dead-letter "topic": counts by error code and keeps the latest few entries (their
 * codes, reasons and positions, not their bytes) so the terminal view and tests can show them.
 */
export class MemoryDeadLetters implements DeadLetterSink {
  readonly byCode = new Map<string, number>();
  readonly latest: Array<Omit<DeadLetter, 'value' | 'key'>> = [];
  total = 0;

  constructor(private readonly keep = 20) {}

  async send(entries: DeadLetter[]): Promise<void> {
    for (const d of entries) {
      this.total++;
      this.byCode.set(d.code, (this.byCode.get(d.code) ?? 0) + 1);
      this.latest.push({ partition: d.partition, offset: d.offset, code: d.code, reason: d.reason });
      if (this.latest.length > this.keep) this.latest.shift();
    }
  }
}

/** 32-bit FNV-1a: cheap, stable across runs and platforms. */
function fnv1a(bytes: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i] as number;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
