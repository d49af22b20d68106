import type { OffsetCommitter } from '../pipeline/types.js';
import type { OutgoingMessage } from './event-producer.js';
import type { SourceListener } from './kafka-source.js';

/**
 * What the engine reads events from: the Kafka consumer group member (`KafkaSource`, `nudge
 * run`) or an in-process source (`InProcessSource`, `nudge demo`, DESIGN §2.5). Either way the
 * events reach the same lanes through the same `SourceListener`, and offsets come back through
 * `commit` once a batch's state is committed in Redis.
 */
export interface EventSource extends OffsetCommitter {
  /** Starts delivering batches to `listener`; resolves once reading has begun. */
  start(listener: SourceListener): Promise<void>;
  /**
   * Stops reading; waits up to `waitMs` for the batch being handed over. Offsets of batches
   * still in the lanes can be committed until `stop()`: a graceful stop reads no more, lets the
   * lanes finish, then disconnects, so the group's offsets end where the state is.
   */
  stopReading(waitMs?: number): Promise<void>;
  /** Stops reading (if not yet) and releases the connection; later commits are dropped. */
  stop(waitMs?: number): Promise<void>;
  /** For `/readyz`. */
  isConnected(): boolean;
  assignedPartitions(): number[];
  /**
   * Drops owned partitions and assigns them again, as a rebalance would (their lanes are
   * revoked, then claimed afresh at the fence Redis holds): for when Redis lost writes the
   * lanes had seen acknowledged. Absent: the source cannot re-read (the in-process demo source).
   */
  reclaim?(partitions: number[]): void;
}

/**
 * Where `POST /v1/events` hands the events it accepted: the Kafka producer, or the in-process
 * source of the demo. Resolves once every message is durable in the source (acknowledged by the
 * broker, or queued in the in-process source); rejects otherwise.
 */
export interface EventSink {
  sendAndWait(topic: string, messages: OutgoingMessage[], timeoutMs?: number): Promise<void>;
}
