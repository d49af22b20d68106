import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config/load.js';
import type { NudgeConfig } from '../../src/config/schema.js';
import { EventProducer } from '../../src/sources/event-producer.js';
import { librdkafkaOptions } from '../../src/sources/kafka-options.js';
import { laneKeys } from '../../src/state/keys.js';
import { withAdmin } from './kafka-admin.js';
import type { LogMessage } from './reference-log.js';

/** Writes a config file for a test and loads it the way `nudge run --config` does. */
export function testConfig(yamlText: string): { file: string; config: NudgeConfig } {
  const dir = mkdtempSync(join(tmpdir(), 'nudge-config-'));
  const file = join(dir, 'nudge.yaml');
  writeFileSync(file, yamlText);
  return { file, config: loadConfig({ file, env: {} }) };
}

/** Produces a prepared log with explicit partitions and waits for every acknowledgement. */
export async function produceLog(brokers: string, topic: string, log: LogMessage[]): Promise<void> {
  const producer = new EventProducer({ connection: { 'bootstrap.servers': brokers } });
  await producer.connect();
  try {
    for (const m of log) await producer.produce(topic, m.key, m.value, undefined, m.partition);
    const stats = await producer.flush();
    if (stats.failed > 0) throw new Error(`${stats.failed} messages failed: ${stats.firstError}`);
  } finally {
    await producer.disconnect();
  }
}

/** The next offset to be written per partition (the high watermark). */
export async function highWatermarks(brokers: string, topic: string): Promise<Map<number, number>> {
  return withAdmin(brokers, async (admin) => {
    const offsets = await admin.fetchTopicOffsets(topic);
    return new Map(offsets.map((o) => [o.partition, Number(o.high)]));
  });
}

/**
 * Resolves when every lane's fence in Redis has reached the end of its partition: the engine
 * has applied everything produced. Polls (there is no event to await across processes), with
 * a deadline and a message saying how far each lane got.
 */
export async function waitForLanes(redis: Redis, namespace: string, topic: string, ends: Map<number, number>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const pending: string[] = [];
    for (const [partition, high] of ends) {
      if (high === 0) continue;
      const offset = await redis.hget(laneKeys(namespace, topic, partition).fence, 'offset');
      if (offset === null || Number(offset) < high - 1) pending.push(`p${partition}: ${offset ?? 'none'}/${high - 1}`);
    }
    if (pending.length === 0) return;
    last = pending.join(', ');
    if (Date.now() > deadline) throw new Error(`lanes did not catch up within ${timeoutMs} ms: ${last}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Deletes every key of a test namespace. */
export async function dropNamespace(redis: Redis, namespace: string): Promise<void> {
  await dropKeys(redis, [`{${namespace}:*`, `${namespace}:*`]);
}

/** Deletes every key matching one of the patterns (SCAN, not KEYS: the server stays responsive). */
export async function dropKeys(redis: Redis, patterns: readonly string[]): Promise<void> {
  for (const pattern of patterns) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      if (keys.length) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  }
}

export { librdkafkaOptions };
