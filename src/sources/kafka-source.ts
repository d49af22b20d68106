import kafka from '@confluentinc/kafka-javascript';
import type { ConsumerGlobalConfig, LibrdKafkaError, Message, TopicPartition } from '@confluentinc/kafka-javascript';
import { ErrorCodes, NudgeError } from '../errors.js';
import type { Logger } from '../log.js';
import { settlesWithin } from '../pipeline/settles-within.js';
import type { PartitionBatch } from '../pipeline/types.js';
import { committedOffsets, watermarks } from './broker-offsets.js';
import { consumerLag } from './consumer-lag.js';
import { kafkaConnectError, rememberBrokerError } from './kafka-options.js';
import { OffsetCommitter } from './offset-committer.js';
import { resumeOffset, type CommittedOffset } from './resume-offset.js';

export interface SourceListener {
  /**
   * Called when partitions are assigned, before the source starts fetching them. May resolve
   * with the offset each partition's state needs next (the lane's fence + 1, 0 when nothing
   * was applied): the source then never starts past it (see `resumeOffset`). Fetching these
   * partitions waits for it — a Redis that is down delays the assignment, which is the pause
   * DESIGN §5 asks for (librdkafka keeps heartbeating meanwhile). Returning nothing starts at
   * the group's committed offset.
   */
  onAssigned(partitions: number[]): Promise<ReadonlyMap<number, number>> | void;
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
  /** How long one consume call waits for its first message. @default 100 */
  maxWaitMs?: number;
  /** Extra consumer properties (benchmarks, tests). */
  tuning?: Record<string, string | number | boolean>;
  logger: Logger;
  /** Receives the consumer lag of assigned partitions, every `lagIntervalMs` (see `lag()`). */
  lag?: ConsumerLagSink;
  /**
   * How often the lag is measured (one OffsetFetch plus one ListOffsets per assigned
   * partition, one at a time).
   * @default 5_000
   */
  lagIntervalMs?: number;
  /**
   * How long committed offsets are gathered before one commit request carries them all.
   * @default 100
   */
  commitIntervalMs?: number;
}

/** Where per-partition lag goes (the engine passes a prom-client gauge behind this). */
export interface ConsumerLagSink {
  set(partition: number, lag: number): void;
  /** The partition is no longer assigned here: drop its series. */
  clear(partition: number): void;
}

/** How long a committed-offsets or watermarks request to the broker is waited for. */
const BROKER_QUERY_TIMEOUT_MS = 5_000;

/** Methods the binding has (lib/kafka-consumer.js) and its type declarations (1.10.1) lack. */
type CooperativeConsumer = kafka.KafkaConsumer & {
  setDefaultIsTimeoutOnlyForFirstMessage(value: boolean): void;
  rebalanceProtocol(): 'COOPERATIVE' | 'EAGER' | 'NONE';
  incrementalAssign(assignments: TopicPartition[]): void;
  incrementalUnassign(assignments: TopicPartition[]): void;
};

/**
 * The events topic as a consumer group member, read with the node-rdkafka-style `consume(n)`
 * loop rather than the KafkaJS-style `eachBatch`.
 *
 * Why: `npm run bench:consume` (bench/consume-api.bench.ts, the real broker, same topic, same
 * prefetch caps, 2026-11-23) measured `consume(1000)` at 4.6-6.6 µs of CPU per message against
 * 7.9-12.5 µs for `eachBatch` (`js.consumer.max.batch.size` 1000, -1, or the default 32):
 * 1.5-2x, with ~175 MB RSS against 650-720 MB. shared/reference/perf-anchors.md §1.2 agrees
 * (5.4 vs ~8 µs). Figures: bench/results/consume-api.json and the README's Performance section.
 *
 * Offsets: auto-commit is off. `commit()` is called by the pipeline after a batch's state is
 * committed in Redis, so the group offset does not run ahead of the state — unless Redis loses
 * writes it had acknowledged, which assignment (below) repairs: Redis' fence is the source of
 * truth, the group offset only saves re-reading. So offsets are gathered for `commitIntervalMs`
 * and sent in one request (OffsetCommitter); revoked partitions and a stop flush at once, so a
 * graceful handover leaves the group offset at the fence.
 *
 * Memory: librdkafka's prefetch is capped (`queued.max.messages.kbytes`), otherwise a backlog
 * fills ~1 GB; and the loop does not call `consume` again until the pipeline accepted the last
 * batches, so a slow Redis stops reading instead of buffering.
 *
 * Assignment: the rebalance callback is ours, not the binding's default. It asks the listener
 * where each partition's state stands and only then assigns the partitions, at that offset
 * where the group's committed one is past it. Assigning at the right offset rather than
 * seeking after the binding assigned means nothing is ever fetched from the wrong position:
 * a seek races the messages already fetched (and the batch a `consume` call in flight returns),
 * and one such message above the fence would be applied with a gap before it. librdkafka
 * waits for the assign call (state WAIT_ASSIGN_CALL, heartbeats continue), as the binding's
 * own KafkaJS layer relies on when it awaits a user's async rebalance listener.
 */
export class KafkaSource {
  private readonly consumer: CooperativeConsumer;
  private running = false;
  private loop: Promise<void> | null = null;
  private readonly assigned = new Set<number>();
  private readonly offsets: OffsetCommitter;
  /** Partitions whose assignment waits for the listener, by the rebalance that assigned them. */
  private readonly pendingAssign = new Map<number, number>();
  private rebalances = 0;
  private readonly assigning = new Set<Promise<void>>();
  private stopRequested!: () => void;
  private readonly stopping = new Promise<void>((resolve) => (this.stopRequested = resolve));
  private listener: SourceListener | null = null;
  /** librdkafka's recent errors: why a connect timed out (a TLS failure only shows here). */
  private readonly brokerErrors: string[] = [];
  private lagTimer: NodeJS.Timeout | null = null;
  /** Consume calls started so far; see `staleBefore`. */
  private consumeCalls = 0;
  /**
   * Per reclaimed partition, the first consume call whose messages of it may be used: a call
   * started before the reclaim's unassign can return messages fetched from the old position,
   * and the lane claimed afresh would apply them over the gap it is about to re-read.
   */
  private readonly staleBefore = new Map<number, number>();

  constructor(private readonly options: KafkaSourceOptions) {
    this.offsets = new OffsetCommitter((o) => this.sendOffsets(o), (p) => this.assigned.has(p), options.commitIntervalMs ?? 100);
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
      ...options.tuning,
      // Ours: assignment waits for the lanes' fences (see the class comment).
      rebalance_cb: (err: LibrdKafkaError, assignment: TopicPartition[]) => this.onRebalance(err, assignment),
    } as unknown as ConsumerGlobalConfig;
    // auto.offset.reset is a topic property: in the global config the binding ignores it and a
    // new group would start at the end, skipping everything produced before it joined.
    this.consumer = new kafka.KafkaConsumer(config, { 'auto.offset.reset': 'earliest' }) as CooperativeConsumer;
    this.consumer.on('event.error', (err) => {
      rememberBrokerError(this.brokerErrors, err.message);
      options.logger.warn({ code: ErrorCodes.KAFKA_UNAVAILABLE, err: err.message }, 'kafka consumer error (librdkafka retries by itself)');
    });
    // A failed TLS handshake is only logged (FAIL, severity 3), then reported as "all brokers down".
    this.consumer.on('event.log', (log: { severity: number; message: string }) => {
      if (log.severity <= 4) rememberBrokerError(this.brokerErrors, log.message);
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
              kafkaConnectError(
                brokers,
                this.brokerErrors,
                `cannot reach the Kafka broker at ${brokers} (${err.message}). Check kafka.brokers / NUDGE_KAFKA_BROKERS, or start one with npm run services.`,
              ),
              { retriable: true, context: { brokers }, cause: err },
            ),
          );
        } else resolve();
      });
    });
    // Return what is there as soon as one message arrived: the batch is what librdkafka holds
    // at that moment (bounded by maxBatch). Lingering to fill batches was tried (the timeout for
    // every message, 20 ms): CPU per event fell ~18% at 10,000 events/s but p50 latency rose
    // from 0.3 s to 1.9 s on this shared 2-core machine (bench:pipeline --variants paced), and
    // pushes must fire in real time.
    this.consumer.setDefaultConsumeTimeout(this.options.maxWaitMs ?? 100);
    this.consumer.setDefaultIsTimeoutOnlyForFirstMessage(true);
    this.consumer.subscribe([this.options.topic]);
    this.running = true;
    this.loop = this.run();
    if (this.options.lag) this.startLagGauge(this.options.lag);
  }

  assignedPartitions(): number[] {
    return [...this.assigned].sort((a, b) => a - b);
  }

  isConnected(): boolean {
    return this.consumer.isConnected();
  }

  /**
   * Re-assigns owned partitions without leaving the group: revoked (the listener abandons their
   * lanes' in-flight work; librdkafka drops what it prefetched), then assigned through the same
   * path as a rebalance — the listener claims the lanes anew and the partitions start at the
   * fence Redis holds, below the group's committed offset when Redis lost writes. A seek instead
   * would race the messages already fetched (see the class comment).
   * librdkafka allows incremental (un)assign outside the rebalance callback (rdkafka.h).
   */
  reclaim(partitions: number[]): void {
    // An eager assignment can only be replaced whole: then every owned partition goes round.
    const cooperative = this.consumer.rebalanceProtocol() === 'COOPERATIVE';
    const owned = cooperative ? partitions.filter((p) => this.assigned.has(p)) : [...this.assigned];
    if (owned.length === 0 || !this.running) return;
    for (const p of owned) {
      this.assigned.delete(p);
      // Offsets gathered before Redis lost writes may be past its fence: not worth keeping.
      this.offsets.drop(p);
      this.options.lag?.clear(p);
      this.staleBefore.set(p, this.consumeCalls + 1);
    }
    this.listener?.onRevoked(owned);
    this.unassign(owned.map((partition) => ({ topic: this.options.topic, partition })));
    const rebalance = ++this.rebalances;
    for (const p of owned) this.pendingAssign.set(p, rebalance);
    const done = this.assignFromState(owned, rebalance).finally(() => this.assigning.delete(done));
    this.assigning.add(done);
  }

  /** Commits `offset` (the next offset to read) for a partition still owned, with the next flush. */
  commit(partition: number, nextOffset: number): void {
    if (this.assigned.has(partition)) this.offsets.add(partition, nextOffset);
  }

  private sendOffsets(offsets: Array<{ partition: number; offset: number }>): void {
    try {
      this.consumer.commit(offsets.map((o) => ({ topic: this.options.topic, ...o })));
    } catch (err) {
      // A commit can fail during a rebalance; the partition's next batch carries it forward.
      this.options.logger.debug({ partitions: offsets.map((o) => o.partition), err: (err as Error).message }, 'offset commit failed');
    }
  }

  /**
   * Consumer lag per assigned partition (see `consumerLag`): the broker's high watermark minus
   * the group's committed offset, both asked of the broker. Not from librdkafka statistics:
   * this binding serves statistics (like every event) only from inside `consume` calls, and the
   * loop stops calling `consume` exactly when the pipeline falls behind — the gauge would
   * freeze at its last value while the lag grows. Partitions are queried one at a time, so a
   * broker that does not answer ties up one libuv worker, not the pool `consume` runs on.
   * A partition whose figures did not arrive is left out.
   */
  async lag(): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    const partitions = this.assignedPartitions();
    if (partitions.length === 0) return out;
    const committed = await committedOffsets(this.consumer, this.options.topic, partitions, BROKER_QUERY_TIMEOUT_MS);
    if (committed === null) return out;
    for (const partition of partitions) {
      const w = await watermarks(this.consumer, this.options.topic, partition, BROKER_QUERY_TIMEOUT_MS);
      if (w !== null) out.set(partition, consumerLag(w, committed.get(partition)));
    }
    return out;
  }

  /**
   * Stops reading and leaves the group. `waitMs` bounds the wait for the consume loop, which
   * sits in `onBatch` while the pipeline cannot take a batch (Redis down): past it the
   * consumer disconnects anyway, and the batches not yet accepted are re-read by the next owner.
   */
  async stopReading(waitMs = Number.POSITIVE_INFINITY): Promise<void> {
    this.running = false;
    this.stopRequested();
    if (this.lagTimer) clearInterval(this.lagTimer);
    this.lagTimer = null;
    await settlesWithin(Promise.all([this.loop, ...this.assigning]), waitMs);
  }

  async stop(waitMs = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.running) await this.stopReading(waitMs);
    // What the lanes committed up to now; librdkafka's close waits for the request.
    this.offsets.close();
    await new Promise<void>((resolve) => this.consumer.disconnect(() => resolve()));
    for (const p of this.assigned) this.options.lag?.clear(p);
    this.assigned.clear();
  }

  private onRebalance(err: LibrdKafkaError, assignment: TopicPartition[]): void {
    const partitions = assignment.map((tp) => tp.partition);
    try {
      if (err.code === kafka.CODES.ERRORS.ERR__ASSIGN_PARTITIONS) {
        const rebalance = ++this.rebalances;
        for (const p of partitions) this.pendingAssign.set(p, rebalance);
        const done = this.assignFromState(partitions, rebalance).finally(() => this.assigning.delete(done));
        this.assigning.add(done);
      } else if (err.code === kafka.CODES.ERRORS.ERR__REVOKE_PARTITIONS) {
        // Before they stop being ours: the next owner starts at what was applied here.
        this.offsets.flush(partitions);
        for (const p of partitions) {
          this.assigned.delete(p);
          this.pendingAssign.delete(p);
          this.options.lag?.clear(p);
        }
        this.listener?.onRevoked(partitions);
        this.unassign(assignment);
      } else {
        this.options.logger.warn({ err: err.message }, 'unexpected rebalance event');
      }
    } catch (e) {
      this.options.logger.error({ err: (e as Error).message }, 'rebalance handling failed');
    }
  }

  /** Asks the listener where the partitions' state stands, then assigns them there. */
  private async assignFromState(partitions: number[], rebalance: number): Promise<void> {
    let needed: ReadonlyMap<number, number> = new Map();
    try {
      const answer = this.listener?.onAssigned(partitions);
      // A stop does not wait for a claim stuck on a down Redis: the partitions are assigned
      // as they are, and no lane will process them.
      if (answer) needed = (await Promise.race([answer, this.stopping.then(() => null)])) ?? new Map();
    } catch (e) {
      this.options.logger.error({ partitions, err: (e as Error).message }, 'opening lanes failed; partitions start at the committed offset');
    }
    const committed = needed.size > 0 && this.running ? await this.committedAtAssignment([...needed.keys()]) : new Map<number, CommittedOffset>();
    // Revoked while the lanes were claimed (an assignment lost): not ours to assign any more.
    const still = partitions.filter((p) => this.pendingAssign.get(p) === rebalance);
    for (const p of still) this.pendingAssign.delete(p);
    // Assign even an empty list: librdkafka waits for the call after every assignment event
    // (cooperative rebalances deliver empty ones), and the group's next step waits with it.
    const toppars: TopicPartition[] = still.map((partition) => {
      const offset = resumeOffset(needed.get(partition), committed.get(partition) ?? 'none');
      if (offset !== undefined) {
        this.options.logger.warn(
          { partition, resumeAt: offset, fenceNext: needed.get(partition), committed: committed.get(partition) },
          'the group\'s committed offset is past what Redis has applied (Redis restored from an older state?); reading again from Redis\' fence',
        );
        return { topic: this.options.topic, partition, offset };
      }
      return { topic: this.options.topic, partition };
    });
    try {
      if (this.consumer.rebalanceProtocol() === 'COOPERATIVE') this.consumer.incrementalAssign(toppars);
      else this.consumer.assign(toppars);
      for (const p of still) this.assigned.add(p);
    } catch (e) {
      // Disconnected meanwhile (a stop): nothing to assign any more.
      if (this.consumer.isConnected()) this.options.logger.error({ partitions: still, err: (e as Error).message }, 'assigning partitions failed');
    }
  }

  private async committedAtAssignment(partitions: number[]): Promise<Map<number, CommittedOffset>> {
    const fetched = await committedOffsets(this.consumer, this.options.topic, partitions, BROKER_QUERY_TIMEOUT_MS);
    if (fetched === null) this.options.logger.warn({ partitions }, 'could not fetch the group\'s committed offsets; the partitions start at Redis\' fence');
    return new Map(partitions.map((p) => [p, fetched === null ? 'unknown' : (fetched.get(p) ?? 'none')]));
  }

  private unassign(assignment: TopicPartition[]): void {
    try {
      if (this.consumer.rebalanceProtocol() === 'COOPERATIVE') this.consumer.incrementalUnassign(assignment);
      else this.consumer.unassign();
    } catch (e) {
      if (this.consumer.isConnected()) this.options.logger.error({ err: (e as Error).message }, 'unassigning partitions failed');
    }
  }

  private startLagGauge(sink: ConsumerLagSink): void {
    let measuring = false;
    this.lagTimer = setInterval(() => {
      if (measuring) return; // a broker slow to answer: skip a tick rather than pile up queries
      measuring = true;
      this.lag()
        .then((lags) => {
          // Revoked while measuring: its series was cleared and must stay so.
          for (const [partition, lag] of lags) if (this.assigned.has(partition)) sink.set(partition, lag);
        })
        .catch((err: unknown) => this.options.logger.debug({ err: (err as Error).message }, 'consumer lag not measured'))
        .finally(() => (measuring = false));
    }, this.options.lagIntervalMs ?? 5_000);
    this.lagTimer.unref();
  }

  private async run(): Promise<void> {
    const maxBatch = this.options.maxBatch ?? 1000;
    while (this.running) {
      let messages: Message[];
      const call = ++this.consumeCalls;
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
        if (call < (this.staleBefore.get(m.partition) ?? 0)) continue;
        let list = byPartition.get(m.partition);
        if (list === undefined) byPartition.set(m.partition, (list = []));
        list.push(m);
      }
      // Waiting here (not buffering) is what keeps memory flat when Redis is slower than Kafka.
      await Promise.all([...byPartition].map(([partition, msgs]) => this.listener!.onBatch({ partition, messages: msgs })));
    }
  }
}

