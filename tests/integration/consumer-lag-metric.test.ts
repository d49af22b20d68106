import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import { afterAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { PipelineMetrics } from '../../src/metrics/pipeline-metrics.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import type { PartitionBatch } from '../../src/pipeline/types.js';
import { KafkaSource } from '../../src/sources/kafka-source.js';
import { createTopic, deleteTopics, uniqueName } from '../support/kafka-admin.js';
import { dropNamespace, highWatermarks, produceLog, testConfig, waitForLanes } from '../support/engine-harness.js';
import type { LogMessage } from '../support/reference-log.js';

/**
 * `nudge_consumer_lag{partition}`: how many messages of each assigned partition are not yet
 * applied and committed (high watermark minus the group's committed offset); a series per
 * assigned partition only (bounded by the partition count), removed when the partition is
 * revoked. It must keep moving while the pipeline holds batches (backpressure): that is when
 * the lag grows, and when a gauge fed from librdkafka statistics froze (this binding serves
 * statistics only from inside consume calls).
 */
const T0 = Date.UTC(2026, 6, 1, 9);

function log(count: number, partitions: number): LogMessage[] {
  return Array.from({ length: count }, (_, i) => {
    const e: AppEvent = { eventId: `l${i}`, userId: `lag-user-${i % 9}`, name: 'login', timeMs: T0 + i, channel: 'app', props: {}, value: 0, tz: '', deviceId: '', sentMs: 0 };
    return { partition: i % partitions, key: e.userId, value: Buffer.from(encodeEvent(e)), ref: undefined as never };
  });
}

/** The lag series in a Prometheus exposition, by partition label (absent = no series). */
function lagSeries(text: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const m of text.matchAll(/^nudge_consumer_lag\{partition="(\d+)"\} (\S+)$/gm)) out.set(Number(m[1]), Number(m[2]));
  return out;
}

async function waitFor<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(value instanceof Map ? [...value] : value)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const brokers = inject('kafkaBrokers');
const topics: string[] = [];
afterAll(() => deleteTopics(brokers, topics));

describe('nudge_consumer_lag from librdkafka statistics', () => {
  it('shows what each assigned partition has not committed, and drops the series of a revoked partition', async () => {
    const topic = uniqueName('lag-source');
    topics.push(topic);
    const group = uniqueName('lag-group');
    await createTopic(brokers, topic, 2);
    await produceLog(brokers, topic, log(30, 2)); // 15 per partition

    const source = (registry: Registry) => {
      const metrics = new PipelineMetrics(registry);
      return new KafkaSource({
        connection: { 'bootstrap.servers': brokers, 'session.timeout.ms': 6000, 'heartbeat.interval.ms': 500 },
        topic,
        groupId: group,
        logger: silentLogger(),
        lagIntervalMs: 100,
        lag: {
          set: (partition, lag) => metrics.consumerLag.set({ partition: String(partition) }, lag),
          clear: (partition) => metrics.consumerLag.remove({ partition: String(partition) }),
        },
      });
    };
    const registry = createMetricsRegistry({ processMetrics: false });
    const first = source(registry);
    onTestFinished(() => first.stop(5_000));
    // The pipeline holds every batch until the test lets go: nothing is committed meanwhile.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const lastOffset = new Map<number, number>();
    await first.start({
      onAssigned: () => Promise.resolve(new Map()),
      onRevoked: () => {},
      onBatch: async (batch: PartitionBatch) => {
        await gate;
        const last = batch.messages[batch.messages.length - 1]!.offset;
        lastOffset.set(batch.partition, last);
        first.commit(batch.partition, last + 1);
      },
    });
    const series = async () => lagSeries(await registry.metrics());

    // Nothing committed yet: every retained message of both partitions is lag.
    await waitFor(series, (s) => s.get(0) === 15 && s.get(1) === 15, 'lag 15 on both partitions');
    // A commit on one partition shows up as that partition's lag.
    first.commit(0, 5);
    await waitFor(series, (s) => s.get(0) === 10 && s.get(1) === 15, 'lag 10 after committing 5 of partition 0');
    // Draining brings both to 0.
    release();
    await waitFor(series, (s) => s.get(0) === 0 && s.get(1) === 0, 'lag 0 after draining');
    expect([...lastOffset]).toEqual(expect.arrayContaining([[0, 14], [1, 14]]));

    // A second member takes one partition: the first one's series for it goes away.
    const second = source(createMetricsRegistry({ processMetrics: false }));
    onTestFinished(() => second.stop(5_000));
    await second.start({ onAssigned: () => Promise.resolve(new Map()), onRevoked: () => {}, onBatch: async () => {} });
    await waitFor(async () => first.assignedPartitions(), (a) => a.length === 1, 'the first member keeps one partition');
    const kept = first.assignedPartitions()[0]!;
    const after = await waitFor(series, (s) => s.size === 1, 'one series left on the first member');
    expect([...after.keys()]).toEqual([kept]);
  });

  it('serves the lag of the engine’s partitions on /metrics, 0 once everything is applied', async () => {
    const topic = uniqueName('lag-engine');
    topics.push(topic, `${topic}.dlq`);
    const namespace = `l${randomBytes(4).toString('hex')}`;
    const redis = new Redis(inject('redisUrl'));
    onTestFinished(async () => {
      await dropNamespace(redis, namespace);
      await redis.quit();
    });
    await createTopic(brokers, topic, 3);
    await createTopic(brokers, `${topic}.dlq`, 1);
    await produceLog(brokers, topic, log(90, 3));
    const { config } = testConfig(`
kafka:
  brokers: [${brokers}]
  topic: ${topic}
  dlqTopic: ${topic}.dlq
  groupId: ${uniqueName('lag-engine-group')}
redis:
  url: ${inject('redisUrl')}
  keyPrefix: ${namespace}
http:
  port: 0
time:
  reportingTimeZone: UTC
`);
    const engine = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry(), clock: () => T0, lagIntervalMs: 100 });
    onTestFinished(() => engine.stop());
    await engine.start();
    await waitForLanes(redis, namespace, topic, await highWatermarks(brokers, topic), 30_000);
    const scrape = async () => {
      const res = await fetch(`${engine.opsUrl}/metrics`);
      return lagSeries(await res.text());
    };
    const lag = await waitFor(scrape, (s) => s.size === 3 && [...s.values()].every((v) => v === 0), 'lag 0 on all three partitions');
    expect([...lag.keys()].sort()).toEqual([0, 1, 2]);
  });
});
