import { randomBytes } from 'node:crypto';
import kafkaJs, { type KafkaJS } from '@confluentinc/kafka-javascript';

const { Kafka, logLevel, ErrorCodes } = kafkaJs.KafkaJS;

/** Topic, group and key-prefix names no concurrent run (tests, another bench) can collide with. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

async function withAdmin<T>(brokers: string, fn: (admin: KafkaJS.Admin) => Promise<T>): Promise<T> {
  const admin = new Kafka({ kafkaJS: { brokers: brokers.split(','), logLevel: logLevel.ERROR } }).admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

/** Creates a topic and waits until every partition has a leader (the broker has no "ready" event). */
export async function createTopic(brokers: string, topic: string, partitions: number, config: Record<string, string> = {}): Promise<void> {
  await withAdmin(brokers, async (admin) => {
    const configEntries = Object.entries(config).map(([name, value]) => ({ name, value }));
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1, configEntries }] });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const meta = await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => []);
      const parts = meta[0]?.partitions ?? [];
      if (parts.length === partitions && parts.every((p) => p.leader >= 0)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`topic ${topic} not ready on ${brokers} after 30 s`);
  });
}

/** The next offset to be written, per partition. */
export async function highWatermarks(brokers: string, topic: string): Promise<Map<number, number>> {
  return withAdmin(brokers, async (admin) => {
    const offsets = await admin.fetchTopicOffsets(topic);
    return new Map(offsets.map((o) => [o.partition, Number(o.high)]));
  });
}

/** Deletes topics; one that does not exist is not an error. */
export async function deleteTopics(brokers: string, topics: string[]): Promise<void> {
  if (topics.length === 0) return;
  await withAdmin(brokers, async (admin) => {
    const results = await Promise.allSettled(topics.map((topic) => admin.deleteTopics({ topics: [topic] })));
    const failures = results.flatMap((r, i) =>
      r.status === 'rejected' && (r.reason as { code?: number }).code !== ErrorCodes.ERR_UNKNOWN_TOPIC_OR_PART ? [`${topics[i]}: ${(r.reason as Error).message}`] : [],
    );
    if (failures.length > 0) throw new Error(`could not delete topics: ${failures.join('; ')}`);
  });
}

export function sumOf(m: Map<number, number>): number {
  let s = 0;
  for (const v of m.values()) s += v;
  return s;
}
