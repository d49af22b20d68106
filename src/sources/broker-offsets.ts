import type kafka from '@confluentinc/kafka-javascript';
import type { Watermarks } from './consumer-lag.js';

/**
 * The broker's view of a topic's partitions, asked through a connected consumer. Both calls run
 * on a libuv worker and do not need the consume loop to be running. They never reject: null
 * means the broker did not answer in time, or the consumer is disconnected.
 */

/** The group's committed offsets; a partition the group never committed is absent. */
export function committedOffsets(consumer: kafka.KafkaConsumer, topic: string, partitions: number[], timeoutMs: number): Promise<Map<number, number> | null> {
  return new Promise((resolve) => {
    try {
      consumer.committed(
        partitions.map((partition) => ({ topic, partition })),
        timeoutMs,
        (err, offsets) => {
          if (err) return resolve(null);
          const out = new Map<number, number>();
          for (const o of offsets) if (typeof o.offset === 'number' && o.offset >= 0) out.set(o.partition, o.offset);
          resolve(out);
        },
      );
    } catch {
      resolve(null);
    }
  });
}

/** The first offset still kept and the next to be written, from the partition leader. */
export function watermarks(consumer: kafka.KafkaConsumer, topic: string, partition: number, timeoutMs: number): Promise<Watermarks | null> {
  return new Promise((resolve) => {
    try {
      consumer.queryWatermarkOffsets(topic, partition, timeoutMs, (err, w) => resolve(err ? null : { low: w.lowOffset, high: w.highOffset }));
    } catch {
      resolve(null);
    }
  });
}
