import kafkaJs from '@confluentinc/kafka-javascript';
import { uniqueName, withAdmin } from './kafka-admin.js';

/** One message as the topic holds it. */
export interface TopicMessage {
  partition: number;
  offset: number;
  key: string | null;
  value: Buffer;
  headers: Record<string, string>;
}

/**
 * Reads a topic from the beginning with a group of its own: what the broker really holds, the
 * ground truth that "nothing lost" and the dead letters are checked against (not a producer's
 * count of what it sent). With `count`, until that many messages arrived; without, every
 * message up to the high watermarks taken at the call. Sorted by partition and offset.
 */
export async function readTopic(brokers: string, topic: string, o: { count?: number; timeoutMs?: number } = {}): Promise<TopicMessage[]> {
  const timeoutMs = o.timeoutMs ?? 120_000;
  const ends = o.count === undefined ? await withAdmin(brokers, async (admin) => new Map((await admin.fetchTopicOffsets(topic)).map((x) => [x.partition, Number(x.high)]))) : null;
  const total = ends === null ? (o.count as number) : [...ends.values()].reduce((a, b) => a + b, 0);
  const out: TopicMessage[] = [];
  if (total === 0) return out;
  const { Kafka, logLevel } = kafkaJs.KafkaJS;
  const consumer = new Kafka({ kafkaJS: { brokers: brokers.split(','), logLevel: logLevel.NOTHING } }).consumer({
    kafkaJS: { groupId: uniqueName('test-reader'), fromBeginning: true, autoCommit: false },
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${out.length} of ${total} messages of ${topic} within ${timeoutMs} ms`)), timeoutMs);
      void consumer.run({
        eachMessage: async ({ partition, message }) => {
          const offset = Number(message.offset);
          if (ends !== null && offset >= (ends.get(partition) ?? 0)) return;
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
          out.push({ partition, offset, key: message.key?.toString() ?? null, value: message.value ?? Buffer.alloc(0), headers });
          if (out.length >= total) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
  } finally {
    await consumer.disconnect();
  }
  return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}
