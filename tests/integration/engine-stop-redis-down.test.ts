import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { Redis } from 'ioredis';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { startRedisServer } from '../../src/dev/redis-server.js';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { createTopic, deleteTopics, uniqueName, withAdmin } from '../support/kafka-admin.js';
import { highWatermarks, produceLog, testConfig, waitForLanes } from '../support/engine-harness.js';
import { until } from '../support/poll.js';
import type { LogMessage } from '../support/reference-log.js';

/**
 * `Engine.stop()` while Redis is down: Redis commands wait for the reconnection without limit
 * (maxRetriesPerRequest: null, so a down Redis pauses the pipeline), and a stop used to wait
 * with them — forever, for a batch retrying its load, for the consume loop blocked behind it,
 * and for QUIT. Now it waits `stopTimeoutMs` at most, abandons what is in flight (nothing of it
 * committed, no offset moved) and returns.
 */
const T0 = Date.UTC(2026, 7, 3, 12);
const STOP_TIMEOUT_MS = 2_000;

function log(from: number, count: number): LogMessage[] {
  return Array.from({ length: count }, (_, k) => {
    const i = from + k;
    const e: AppEvent = { eventId: `s${i}`, userId: `stop-user-${i % 5}`, name: 'login', timeMs: T0 + i, channel: 'app', props: {}, value: 0, tz: '', deviceId: '', sentMs: 0 };
    return { partition: 0, key: e.userId, value: Buffer.from(encodeEvent(e)), ref: undefined as never };
  });
}

describe('Engine.stop() with Redis down', () => {
  const brokers = inject('kafkaBrokers');
  const topic = uniqueName('stop-events');
  afterAll(() => deleteTopics(brokers, [topic, `${topic}.dlq`]));

  it('returns within its timeout, commits nothing of the abandoned batch, and moves no offset', async () => {
    const server = await startRedisServer();
    onTestFinished(() => server.stop());
    await createTopic(brokers, topic, 1);
    await createTopic(brokers, `${topic}.dlq`, 1);
    const group = uniqueName('stop-group');
    const namespace = `s${randomBytes(4).toString('hex')}`;
    const { config } = testConfig(`
kafka:
  brokers: [${brokers}]
  topic: ${topic}
  dlqTopic: ${topic}.dlq
  groupId: ${group}
redis:
  url: ${server.url}
  keyPrefix: ${namespace}
http:
  port: 0
time:
  reportingTimeZone: UTC
`);
    const engine = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry(), clock: () => T0, http: false, stopTimeoutMs: STOP_TIMEOUT_MS });
    let stopped = false;
    onTestFinished(async () => {
      if (!stopped) await engine.stop();
    });
    await engine.start();
    await produceLog(brokers, topic, log(0, 20));
    const redis = new Redis(server.url);
    await waitForLanes(redis, namespace, topic, await highWatermarks(brokers, topic), 30_000);
    redis.disconnect();
    // Offsets are committed up to kafka-source's commit interval after the fence moved.
    await until('the group offset at 20', 10_000, async () => (await committed(brokers, group, topic)) === 20);

    // Redis goes away; the next batch is read and its lane pauses, retrying the load.
    await server.kill();
    await produceLog(brokers, topic, log(20, 20));
    const consumed = async () => (await engine.metrics.eventsConsumed.get()).values[0]?.value ?? 0;
    const deadline = Date.now() + 20_000;
    while ((await consumed()) < 40) {
      if (Date.now() > deadline) throw new Error(`the second batch was not read (consumed ${await consumed()})`);
      await new Promise((r) => setTimeout(r, 50));
    }

    const started = Date.now();
    const outcome = await Promise.race([
      engine.stop().then(() => 'stopped'),
      new Promise((resolve) => setTimeout(() => resolve('still waiting after 20 s'), 20_000)),
    ]);
    stopped = outcome === 'stopped';
    expect(outcome).toBe('stopped');
    // The timeout plus the consumer's leave-group; far from "until Redis returns".
    expect(Date.now() - started).toBeLessThan(STOP_TIMEOUT_MS + 5_000);
    expect((await engine.metrics.eventsApplied.get()).values[0]?.value).toBe(20);
    expect(await committed(brokers, group, topic)).toBe(20);
  });
});

async function committed(brokers: string, group: string, topic: string): Promise<number> {
  const [offsets] = await withAdmin(brokers, (admin) => admin.fetchOffsets({ groupId: group, topics: [topic] }));
  return Number(offsets?.partitions.find((p) => p.partition === 0)?.offset ?? -1);
}
