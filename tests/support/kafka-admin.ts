import { randomBytes } from 'node:crypto';
import kafkaJs, { type KafkaJS } from '@confluentinc/kafka-javascript';

const { Kafka, logLevel, ErrorCodes } = kafkaJs.KafkaJS;

/**
 * A name no other test, worker or concurrent run can collide with: tests share one broker and
 * topics outlive a failed test until cleanup. Only `[a-zA-Z0-9._-]`, so it is a legal topic name.
 */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Runs `fn` with a connected admin client and always disconnects it. */
export async function withAdmin<T>(brokers: string, fn: (admin: KafkaJS.Admin) => Promise<T>): Promise<T> {
  const admin = new Kafka({
    kafkaJS: { brokers: brokers.split(','), logLevel: logLevel.ERROR },
  }).admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Creates a topic (replication factor 1) and resolves once its metadata shows every partition
 * with a leader, so a producer or consumer started next sees all partitions at once.
 */
export async function createTopic(
  brokers: string,
  topic: string,
  partitions = 4,
  timeoutMs = 30_000,
): Promise<void> {
  await withAdmin(brokers, async (admin) => {
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }] });
    const deadline = Date.now() + timeoutMs;
    let seen = 'no metadata';
    // The broker has no "topic ready" notification for clients; ask until it agrees.
    while (Date.now() < deadline) {
      const meta = await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => []);
      const parts = meta[0]?.partitions ?? [];
      if (parts.length === partitions && parts.every((p) => p.leader >= 0)) return;
      seen = `${parts.length} of ${partitions} partitions`;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`topic ${topic} not ready on ${brokers} after ${timeoutMs} ms (saw ${seen})`);
  });
}

/** Partition metadata of one topic, sorted by partition id. */
export async function describeTopic(brokers: string, topic: string): Promise<KafkaJS.ITopicMetadata> {
  const [meta] = await withAdmin(brokers, (admin) => admin.fetchTopicMetadata({ topics: [topic] }));
  if (meta === undefined) throw new Error(`no metadata for topic ${topic} on ${brokers}`);
  return { ...meta, partitions: [...meta.partitions].sort((a, b) => a.partitionId - b.partitionId) };
}

/**
 * Deletes topics for test cleanup. A topic that does not exist (never created, or already
 * deleted) is not an error; any other failure is, so leaks do not go unnoticed.
 */
export async function deleteTopics(brokers: string, topics: string[]): Promise<void> {
  if (topics.length === 0) return;
  await withAdmin(brokers, async (admin) => {
    // One request per topic: the client rejects on the first failure and would hide the rest.
    const results = await Promise.allSettled(topics.map((topic) => admin.deleteTopics({ topics: [topic] })));
    const failures = results.flatMap((r, i) =>
      r.status === 'rejected' && (r.reason as { code?: number }).code !== ErrorCodes.ERR_UNKNOWN_TOPIC_OR_PART
        ? [`${topics[i]}: ${(r.reason as Error).message}`]
        : [],
    );
    if (failures.length > 0) throw new Error(`could not delete topics on ${brokers}: ${failures.join('; ')}`);
  });
}
