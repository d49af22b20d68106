/**
 * What the pipeline takes from a source: raw messages of one partition, in offset order.
 * Sources depend on these types, never the other way round.
 */
export interface RawMessage {
  value: Buffer | null;
  key?: Buffer | string | null;
  partition: number;
  offset: number;
  timestamp?: number;
}

export interface PartitionBatch {
  partition: number;
  messages: RawMessage[];
}

/** Where events that cannot be decoded or fail validation go (DESIGN §2.1). */
export interface DeadLetterSink {
  /** Resolves when the broker acknowledged every entry; rejects otherwise. */
  send(entries: DeadLetter[]): Promise<void>;
}

export interface DeadLetter {
  partition: number;
  offset: number;
  key: Buffer | string | null;
  value: Buffer | null;
  code: string;
  reason: string;
}

/** Tells the source which offsets are safely applied, so it can commit them. */
export interface OffsetCommitter {
  commit(partition: number, nextOffset: number): void;
}
