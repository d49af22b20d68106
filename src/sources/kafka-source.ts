import kafka from '@confluentinc/kafka-javascript';
import type { ConsumerGlobalConfig, LibrdKafkaError, Message, TopicPartition } from '@confluentinc/kafka-javascript';
import { ErrorCodes, NudgeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { PartitionBatch } from '../pipeline/types.js';

export interface SourceListener {
  /** Called in the rebalance callback; must not block. Work for the lane starts after it. */
  onAssigned(partitions: number[]): void;
  /** Called in the rebalance callback; in-flight work of these lanes is abandoned safely. */
  onRevoked(partitions: number[]): void;
  /** Resolves when the pipeline can take the batch; this await is the backpressure. */
  onBatch(batch: PartitionBatch): Promise<void>;
}

export interface KafkaSourceOptions {
  connection: Record<string, string | number | boolean>;
  topic: string;
  groupId: string;
  /** Largest micro-batch taken from librdkafka in one call. */
  maxBatch?: number;
  /** How long one consume call waits for its first message (the batch time bound). */
  maxWaitMs?: number;
  /** Extra consumer properties (benchmarks, tests). */
  tuning?: Record<string, string | number | boolean>;
  logger: Logger;
}

/** A method the binding has and its type declarations (1.10.1) lack. */
type CooperativeConsumer = kafka.KafkaConsumer & {
  setDefaultIsTimeoutOnlyForFirstMessage(value: boolean): void;
};

/**
 * The events topic as a consumer group member, read with the node-rdkafka-style `consume(n)`
 * loop rather than the KafkaJS-style `eachBatch`.
 *
 * Why: on this machine class `consume(1000)` costs ~5.4 µs of CPU per message against
 * 7.8-10 µs for `eachBatch` with `js.consumer.max.batch.size` raised (the default batch of 32 is
 * slower still) — shared/reference/perf-anchors.md §1.2, re-measured by
 * `bench/consume-api.bench.ts` against the real broker (see the README's Performance section).
 *
 * Offsets: auto-commit is off. `commit()` is called by the pipeline after a batch's state is
 * committed in Redis, so the group offset never runs ahead of the state (Redis' fence is the
 * source of truth; the group offset only saves re-reading).
 *
 * Memory: librdkafka's prefetch is capped (`queued.max.messages.kbytes`), otherwise a backlog
 * fills ~1 GB; and the loop does not call `consume` again until the pipeline accepted the last
 * batches, so a slow Redis stops reading instead of buffering.
 */
export class KafkaSource {
  private readonly consumer: CooperativeConsumer;
  private running = false;
  private loop: Promise<void> | null = null;
  private readonly assigned = new Set<number>();
  private listener: SourceListener | null = null;

  constructor(private readonly options: KafkaSourceOptions) {
    const config = {
      ...options.connection,
      'group.id': options.groupId,
      'enable.auto.commit': false,
      'enable.auto.offset.store': false,
      'auto.offset.reset': 'earliest',
      'partition.assignment.strategy': 'cooperative-sticky',
      // Confluent's own perf test lowers this from 1000 ms; it doubles consume(n) throughput.
      'fetch.queue.backoff.ms': 100,
      // ~1-2 s of traffic: enough to never starve, small enough to keep RSS flat on a backlog.
      'queued.max.messages.kbytes': 16_384,
      'queued.min.messages': 20_000,
      // The binding assigns in its own rebalance callback (eager or cooperative as negotiated);
      // we follow the 'rebalance' event to open and close lanes.
      rebalance_cb: true,
      ...options.tuning,
    } as unknown as ConsumerGlobalConfig;
    // auto.offset.reset is a topic property: in the global config the binding ignores it and a
    // new group would start at the end, skipping everything produced before it joined.
    this.consumer = new kafka.KafkaConsumer(config, { 'auto.offset.reset': 'earliest' }) as CooperativeConsumer;
    this.consumer.on('rebalance', (err: LibrdKafkaError, assignment: TopicPartition[]) => this.onRebalance(err, assignment));
    this.consumer.on('event.error', (err) => {
      options.logger.warn({ code: ErrorCodes.KAFKA_UNAVAILABLE, err: err.message }, 'kafka consumer error (librdkafka retries by itself)');
    });
  }

  async start(listener: SourceListener): Promise<void> {
    this.listener = listener;
    const brokers = String(this.options.connection['bootstrap.servers'] ?? '');
    await new Promise<void>((resolve, reject) => {
      this.consumer.connect({ timeout: 30_000 }, (err) => {
        if (err) {
          reject(
            new NudgeError(
              ErrorCodes.KAFKA_UNAVAILABLE,
              `cannot reach the Kafka broker at ${brokers} (${err.message}). Check kafka.brokers / NUDGE_KAFKA_BROKERS, or start one with npm run services.`,
              { retriable: true, context: { brokers }, cause: err },
            ),
          );
        } else resolve();
      });
    });
    this.consumer.setDefaultConsumeTimeout(this.options.maxWaitMs ?? 100);
    // Return what is there as soon as one message arrived, instead of waiting to fill the batch.
    this.consumer.setDefaultIsTimeoutOnlyForFirstMessage(true);
    this.consumer.subscribe([this.options.topic]);
    this.running = true;
    this.loop = this.run();
  }

  assignedPartitions(): number[] {
    return [...this.assigned].sort((a, b) => a - b);
  }

  isConnected(): boolean {
    return this.consumer.isConnected();
  }

  /** Commits `offset` (the next offset to read) for a partition still owned. */
  commit(partition: number, nextOffset: number): void {
    if (!this.assigned.has(partition)) return;
    try {
      this.consumer.commit({ topic: this.options.topic, partition, offset: nextOffset });
    } catch (err) {
      // A commit can fail during a rebalance; the next one carries the position forward.
      this.options.logger.debug({ partition, err: (err as Error).message }, 'offset commit failed');
    }
  }

  /** Per-partition consumer lag from the broker's high watermark and our position. */
  async lag(): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    const positions = this.consumer.position(this.assignedPartitions().map((partition) => ({ topic: this.options.topic, partition })));
    await Promise.all(
      positions.map(
        (p) =>
          new Promise<void>((resolve) => {
            this.consumer.queryWatermarkOffsets(this.options.topic, p.partition, 5_000, (err, w) => {
              if (!err && typeof p.offset === 'number' && p.offset >= 0) out.set(p.partition, Math.max(0, w.highOffset - p.offset));
              resolve();
            });
          }),
      ),
    );
    return out;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    await new Promise<void>((resolve) => this.consumer.disconnect(() => resolve()));
  }

  private onRebalance(err: LibrdKafkaError, assignment: TopicPartition[]): void {
    const partitions = assignment.map((tp) => tp.partition);
    try {
      if (err.code === kafka.CODES.ERRORS.ERR__ASSIGN_PARTITIONS) {
        for (const p of partitions) this.assigned.add(p);
        this.listener?.onAssigned(partitions);
      } else if (err.code === kafka.CODES.ERRORS.ERR__REVOKE_PARTITIONS) {
        for (const p of partitions) this.assigned.delete(p);
        this.listener?.onRevoked(partitions);
      } else {
        this.options.logger.warn({ err: err.message }, 'unexpected rebalance event');
      }
    } catch (e) {
      this.options.logger.error({ err: (e as Error).message }, 'rebalance handling failed');
    }
  }

  private async run(): Promise<void> {
    const maxBatch = this.options.maxBatch ?? 1000;
    while (this.running) {
      let messages: Message[];
      try {
        messages = await new Promise<Message[]>((resolve, reject) => {
          this.consumer.consume(maxBatch, (err, msgs) => (err ? reject(err) : resolve(msgs)));
        });
      } catch (err) {
        this.options.logger.warn({ err: (err as Error).message }, 'consume failed; retrying');
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (messages.length === 0 || !this.listener) continue;
      const byPartition = new Map<number, Message[]>();
      for (const m of messages) {
        let list = byPartition.get(m.partition);
        if (list === undefined) byPartition.set(m.partition, (list = []));
        list.push(m);
      }
      // Waiting here (not buffering) is what keeps memory flat when Redis is slower than Kafka.
      await Promise.all([...byPartition].map(([partition, msgs]) => this.listener!.onBatch({ partition, messages: msgs })));
    }
  }
}
