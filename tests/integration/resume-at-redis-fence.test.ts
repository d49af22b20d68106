import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { laneKeys } from '../../src/state/keys.js';
import { createTopic, deleteTopics, uniqueName, withAdmin } from '../support/kafka-admin.js';
import { dropNamespace, highWatermarks, produceLog, testConfig, waitForLanes } from '../support/engine-harness.js';
import type { LogMessage } from '../support/reference-log.js';

/**
 * DESIGN §5: Redis' fence, not the group's committed offset, says where a lane resumes. The
 * group offset is committed after the Redis commit, so normally it is at or behind the fence;
 * but when Redis loses writes it had acknowledged (restored from an older AOF or snapshot, or
 * its last second under `appendfsync everysec` after the Kafka commit landed), the group
 * offset is ahead, and a consumer starting there skipped the events in between forever. Now
 * an assigned partition starts at fence + 1 in that case, and from the beginning when Redis
 * has no fence at all, so the lost state is rebuilt from the log.
 */
const PARTITIONS = 2;
const T0 = Date.UTC(2026, 5, 1, 9);
const DAY = 86_400_000;

function yaml(topic: string, groupId: string, namespace: string): string {
  return `
kafka:
  brokers: [${inject('kafkaBrokers')}]
  topic: ${topic}
  dlqTopic: ${topic}.dlq
  groupId: ${groupId}
redis:
  url: ${inject('redisUrl')}
  keyPrefix: ${namespace}
http:
  port: 0
time:
  reportingTimeZone: UTC
`;
}

function events(prefix: string, count: number, users: number, from: number): LogMessage[] {
  return Array.from({ length: count }, (_, i) => {
    const e: AppEvent = { eventId: `${prefix}${i}`, userId: `${prefix}-user-${i % users}`, name: 'login', timeMs: T0 + from + i, channel: 'app', props: {}, value: 0, tz: '', deviceId: '', sentMs: 0 };
    return { partition: i % PARTITIONS, key: e.userId, value: Buffer.from(encodeEvent(e)), ref: undefined as never };
  });
}

/** Every key of a namespace with its value, as DUMP gives it: a snapshot to restore later. */
async function snapshot(redis: Redis, namespace: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const pattern of [`{${namespace}:*`, `${namespace}:*`]) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      for (const key of keys) {
        const dump = await redis.dumpBuffer(key);
        if (dump) out.set(key, dump);
      }
      cursor = next;
    } while (cursor !== '0');
  }
  return out;
}

async function restore(redis: Redis, namespace: string, keys: Map<string, Buffer>): Promise<void> {
  await dropNamespace(redis, namespace);
  for (const [key, dump] of keys) await redis.restore(key, 0, dump, 'REPLACE');
}

async function committedOffsets(brokers: string, group: string, topic: string): Promise<Map<number, number>> {
  const [committed] = await withAdmin(brokers, (admin) => admin.fetchOffsets({ groupId: group, topics: [topic] }));
  return new Map((committed?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
}

async function waitForCommitted(brokers: string, group: string, topic: string, ends: Map<number, number>): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const committed = await committedOffsets(brokers, group, topic);
    if ([...ends].every(([p, high]) => committed.get(p) === high)) return;
    if (Date.now() > deadline) throw new Error(`group offsets ${JSON.stringify([...committed])} did not reach ${JSON.stringify([...ends])}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('resuming at the Redis fence when the group offset is ahead of it', () => {
  const brokers = inject('kafkaBrokers');
  const topic = uniqueName('resume-events');
  const group = uniqueName('resume-group');
  const namespace = `f${randomBytes(4).toString('hex')}`;
  let redis: Redis;

  beforeAll(async () => {
    redis = new Redis(inject('redisUrl'));
    await createTopic(brokers, topic, PARTITIONS);
    await createTopic(brokers, `${topic}.dlq`, 1);
  });
  afterAll(async () => {
    await dropNamespace(redis, namespace);
    await redis.quit();
    await deleteTopics(brokers, [topic, `${topic}.dlq`]);
  });

  const run = async (until: Map<number, number>): Promise<Engine> => {
    const { config } = testConfig(yaml(topic, group, namespace));
    const engine = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry(), clock: () => T0 + DAY, http: false });
    onTestFinished(() => engine.stop());
    await engine.start();
    await waitForLanes(redis, namespace, topic, until, 30_000);
    await engine.idle();
    return engine;
  };
  const applied = async (engine: Engine) => (await engine.metrics.eventsApplied.get()).values[0]?.value ?? 0;
  const consumed = async (engine: Engine) => (await engine.metrics.eventsConsumed.get()).values[0]?.value ?? 0;

  it('re-reads from fence + 1 after Redis is restored from an older snapshot, and rebuilds a lane Redis lost', async () => {
    // Part A applied and committed; Redis as it was then is the "older snapshot".
    const partA = events('a', 60, 7, 0);
    await produceLog(brokers, topic, partA);
    const endsA = await highWatermarks(brokers, topic);
    const first = await run(endsA);
    await first.stop();
    await waitForCommitted(brokers, group, topic, endsA);
    const olderState = await snapshot(redis, namespace);

    // Part B applied and committed too: the group offset is at the end of the log.
    const partB = events('b', 40, 5, 1_000);
    await produceLog(brokers, topic, partB);
    const ends = await highWatermarks(brokers, topic);
    const second = await run(ends);
    expect(await applied(second)).toBe(partB.length);
    await second.stop();
    await waitForCommitted(brokers, group, topic, ends);

    // Redis comes back from the older snapshot: its fences are at the end of part A.
    await restore(redis, namespace, olderState);
    for (const [p, high] of endsA) expect(await redis.hget(laneKeys(namespace, topic, p).fence, 'offset'), `fence of p${p}`).toBe(String(high - 1));
    expect(await redis.exists(laneKeys(namespace, topic, 0).user('b-user-0'))).toBe(0);

    // The group's offsets say "all done"; Redis says part B is missing. Redis wins: exactly
    // part B is read again (not part A, not nothing) and every part-B user is back.
    const third = await run(ends);
    expect(await consumed(third)).toBe(partB.length);
    expect(await applied(third)).toBe(partB.length);
    for (let u = 0; u < 5; u++) expect(await third.queries.userState(`b-user-${u}`), `b-user-${u}`).not.toBeNull();
    await third.stop();
    await waitForCommitted(brokers, group, topic, ends);

    // Redis loses everything (no fences at all) while the group has committed offsets at the
    // end: the lanes are rebuilt from the beginning of the log.
    await dropNamespace(redis, namespace);
    const fourth = await run(ends);
    expect(await applied(fourth)).toBe(partA.length + partB.length);
    for (let u = 0; u < 7; u++) expect(await fourth.queries.userState(`a-user-${u}`), `a-user-${u}`).not.toBeNull();
    for (let u = 0; u < 5; u++) expect(await fourth.queries.userState(`b-user-${u}`), `b-user-${u}`).not.toBeNull();
  });
});
