import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { createTopic, deleteTopics, uniqueName, withAdmin } from '../support/kafka-admin.js';
import { dropNamespace, highWatermarks, produceLog, testConfig } from '../support/engine-harness.js';
import { appliedMessages, readFences } from '../support/lane-fences.js';
import type { LogMessage } from '../support/reference-log.js';

/**
 * A graceful stop mid-backlog ends with the group's committed offsets exactly where the state in
 * Redis is (fence + 1 per partition): the engine reads no more, lets the batches in flight
 * commit — their offsets too — and only then leaves the group. It used to disconnect first, so
 * the offsets of the last batches were dropped and the group was left behind after every
 * SIGTERM (harmless for correctness, since lanes resume at the fence, but lag read high).
 */
const PARTITIONS = 4;
const EVENTS = 40_000;
const T0 = Date.UTC(2026, 5, 1, 9);

async function committedOffsets(brokers: string, group: string, topic: string): Promise<Map<number, number>> {
  const [committed] = await withAdmin(brokers, (admin) => admin.fetchOffsets({ groupId: group, topics: [topic] }));
  return new Map((committed?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
}

describe('graceful stop', () => {
  const brokers = inject('kafkaBrokers');
  const topic = uniqueName('stop-offsets');
  const group = uniqueName('stop-offsets-group');
  const namespace = `so${randomBytes(4).toString('hex')}`;
  let redis: Redis;

  beforeAll(async () => {
    redis = new Redis(inject('redisUrl'));
    await createTopic(brokers, topic, PARTITIONS);
    await createTopic(brokers, `${topic}.dlq`, 1);
    const log: LogMessage[] = Array.from({ length: EVENTS }, (_, i) => {
      const e: AppEvent = { eventId: `e${i}`, userId: `u${i % 3000}`, name: 'login', timeMs: T0 + i, channel: 'app', props: {}, value: 0, tz: '', deviceId: '', sentMs: 0 };
      return { partition: i % PARTITIONS, key: e.userId, value: Buffer.from(encodeEvent(e)), ref: undefined as never };
    });
    await produceLog(brokers, topic, log);
  });
  afterAll(async () => {
    await dropNamespace(redis, namespace);
    await redis.quit();
    await deleteTopics(brokers, [topic, `${topic}.dlq`]);
  });

  it('mid-backlog leaves the group offsets at fence + 1 on every partition', async () => {
    const ends = await highWatermarks(brokers, topic);
    const { config } = testConfig(`
kafka: { brokers: [${brokers}], topic: ${topic}, dlqTopic: ${topic}.dlq, groupId: ${group} }
redis: { url: ${inject('redisUrl')}, keyPrefix: ${namespace} }
http: { port: 0 }
time: { reportingTimeZone: UTC }
`);
    // Small batches, several in flight: a stop always finds batches between load and commit.
    const engine = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry(), clock: () => T0 + 86_400_000, http: false, maxBatch: 50, maxInFlight: 8 });
    await engine.start();
    const deadline = Date.now() + 60_000;
    while (appliedMessages(await readFences(redis, namespace, topic, ends.keys())) < EVENTS / 5) {
      if (Date.now() > deadline) throw new Error('the engine applied too little in 60 s');
      await new Promise((r) => setTimeout(r, 5));
    }
    await engine.stop();
    const fences = await readFences(redis, namespace, topic, ends.keys());
    expect(appliedMessages(fences)).toBeLessThan(EVENTS); // stopped mid-backlog, as meant
    const committed = await committedOffsets(brokers, group, topic);
    // Per partition: the next offset to read by the group, and by the state. No commit (absent or
    // -1) and no fence (-1) both mean "from the start".
    const groupNext = [...ends.keys()].map((p) => [p, Math.max(committed.get(p) ?? -1, 0)]);
    const stateNext = [...ends.keys()].map((p) => [p, (fences.get(p) ?? -1) + 1]);
    expect(groupNext).toEqual(stateNext);
  });
});
