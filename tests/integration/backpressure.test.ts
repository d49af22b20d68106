import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { encodeEvent } from '../../src/contract/event.js';
import { startRedisServer, type RedisServerHandle } from '../../src/dev/redis-server.js';
import type { NudgeConfig } from '../../src/config/schema.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { StateQueries } from '../../src/state/queries.js';
import { createTopic, deleteTopics, uniqueName, withAdmin } from '../support/kafka-admin.js';
import { highWatermarks, produceLog, testConfig, waitForLanes } from '../support/engine-harness.js';
import { metricValue, startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { readFences } from '../support/lane-fences.js';
import { countMismatches, userMismatches } from '../support/reference-compare.js';
import { buildReferenceLog, type LogMessage } from '../support/reference-log.js';
import { runReference, type RefResult, type RefSpec } from '../support/reference-model.js';

/**
 * Backpressure (issue 3, "Prove it"; DESIGN §5 "a down Redis pauses consumption (no offset
 * moves) and resumes"; STYLE habit 8 "a test proves memory stays flat under a flood").
 *
 * The engine runs in its own process (tests/support/engine-child.ts) against a private
 * redis-server, so that `CLIENT PAUSE 20000 ALL` stalls nobody but this test's engine. A
 * replica of that Redis is the window into it during the pause (a paused server answers no
 * client, not even the one that paused it), and the engine's own /metrics the window into the
 * process. While Redis is paused for 20 s, ~170 MB of events are produced: a source that kept
 * reading would take them into memory; this one must stop at its in-flight cap, move no fence
 * and no committed offset, hold its memory, and then catch up so that every count and every
 * user equals the brute-force reference.
 */
const DAY = 86_400_000;
const PARTITIONS = 4;
const START = Date.UTC(2026, 0, 5, 0, 0);
const DAYS = 30;
const NOW = START + (DAYS + 1) * DAY;
const ZONE = 'Asia/Shanghai';
const PAUSE_MS = 20_000;
const MAX_IN_FLIGHT = 8;
const MAX_BATCH = 500;
/**
 * Memory bounds, in bytes. From just before the pause to any instant of it, the engine may take
 * in what its caps allow and no more: librdkafka's prefetch (queued.max.messages.kbytes, 16 MiB
 * in kafka-source.ts) plus one fetch response over it (max.partition.fetch.bytes, 1 MiB, per
 * partition), and the in-flight batches (8 x 500 events of ~2 KB, 8 MB, some of it held twice:
 * bytes and decoded events), with allocator slack: 48 MiB (measured: ~15 MiB). The flood is
 * over three times that (asserted), so a source that read on would break the bound (with 400
 * batches in flight instead of 8 it does, by 2.5 s into the pause). Once settled, with both
 * caps full and the rest of the flood unread on the broker, RSS may not grow by more than
 * 16 MiB (metric scrapes and GC timing move it by a few MiB), nor the V8 heap by more than
 * 24 MiB (its sawtooth between collections is ~10 MiB here).
 */
const RSS_GROWTH_IN_PAUSE = 48 * 1_048_576;
const RSS_GROWTH_WHILE_SETTLED = 16 * 1_048_576;
const HEAP_GROWTH_WHILE_SETTLED = 24 * 1_048_576;
/** By then the in-flight cap and the prefetch cap are full (measured: under 2 s; the flood takes ~6 s). */
const SETTLE_MS = 5_000;
/**
 * Four props of 500 characters make each event ~2 KB. The characters are random (windows of one
 * random text), so lz4 cannot shrink them on the wire: with a repetitive padding, one 1 MiB
 * fetch per partition decompresses into far more than librdkafka's byte caps assume, which
 * would measure the compression ratio rather than the engine.
 */
const PAD_CHARS = 500;
const PADDING = randomBytes(3 * 1_048_576).toString('base64');

const refSpec: RefSpec = {
  reportingTimeZone: ZONE,
  allowedLatenessMs: 2 * 3_600_000,
  maxFutureSkewMs: 5 * 60_000,
  metrics: [{ name: 'active', events: null }],
  newForMs: 7 * DAY,
  dormantAfterMs: 14 * DAY,
  churnedAfterMs: 30 * DAY,
  reactivatedForMs: 7 * DAY,
  counters: [{ name: 'loan_views', eventName: 'page_view', props: { page: 'loan_detail' }, keep: 3, withinMs: DAY }],
  streaks: [],
  recentIds: 32,
};

function yaml(topic: string, redisUrl: string, namespace: string): string {
  return `
kafka:
  brokers: [${inject('kafkaBrokers')}]
  topic: ${topic}
  dlqTopic: ${topic}.dlq
  groupId: ${uniqueName('bp-group')}
redis:
  url: ${redisUrl}
  keyPrefix: ${namespace}
http:
  port: 0
time:
  reportingTimeZone: ${ZONE}
  allowedLateness: 2h
  maxFutureSkew: 5m
activity:
  metrics:
    - name: active
# Timer batches would commit (and hold a permit) at moments of their own; this test is about
# event batches, so the sweep waits an hour.
lifecycle:
  sweepInterval: 1h
behaviour:
  counters:
    - name: loan_views
      match: { name: page_view, props: { page: loan_detail } }
      keep: 3
      within: 24h
`;
}

/** The reference log with every valid event padded to ~2 KB (the padding is a prop nothing reads). */
function paddedLog(): LogMessage[] {
  let seed = 7;
  const log = buildReferenceLog({ seed: 4_242_001, users: 4_000, days: DAYS, events: 100_000, partitions: PARTITIONS, startMs: START, nowMs: NOW, reportingTimeZone: ZONE });
  for (const m of log) {
    const e = m.ref.event;
    if (e === null) continue;
    const pad = (): string => {
      seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
      const at = seed % (PADDING.length - PAD_CHARS);
      return PADDING.slice(at, at + PAD_CHARS);
    };
    e.props = { ...e.props, pad1: pad(), pad2: pad(), pad3: pad(), pad4: pad() };
    m.value = Buffer.from(encodeEvent({ ...e, deviceId: '', sentMs: 0 }));
  }
  return log;
}

interface Sample {
  at: number;
  consumed: number;
  applied: number;
  committedBatches: number;
  inFlight: number;
  rss: number;
  heap: number;
  fences: Map<number, number>;
  offsets: Map<number, number>;
  /** Messages in the topic (sum of high watermarks). */
  produced: number;
}

describe('a paused Redis stops the engine without buffering, and it catches up exactly', () => {
  const brokers = inject('kafkaBrokers');
  const topic = uniqueName('bp-events');
  const namespace = `b${randomBytes(4).toString('hex')}`;
  let primary: RedisServerHandle;
  let replica: RedisServerHandle;
  let redis: Redis;
  let replicaClient: Redis;
  let child: EngineProcess | undefined;
  let groupId: string;
  let configFile: string;
  let loadedConfig: NudgeConfig;
  let log: LogMessage[];
  let avgBytes: number;
  let ref: RefResult;

  beforeAll(async () => {
    // No 5 s wait before the replica's first full sync (repl-diskless-sync-delay).
    primary = await startRedisServer({ extraArgs: ['--repl-diskless-sync-delay', '0'] });
    replica = await startRedisServer({ extraArgs: ['--replicaof', '127.0.0.1', String(primary.port)] });
    redis = new Redis(primary.url);
    replicaClient = new Redis(replica.url);
    const topics = Promise.all([createTopic(brokers, topic, PARTITIONS), createTopic(brokers, `${topic}.dlq`, 1)]);
    log = paddedLog();
    avgBytes = log.reduce((n, m) => n + m.value.length, 0) / log.length;
    ref = runReference(log.map((m) => m.ref), refSpec, NOW);
    await topics;
    await waitForReplicaLink(replicaClient, 15_000);
    const written = testConfig(yaml(topic, primary.url, namespace));
    configFile = written.file;
    loadedConfig = written.config;
    groupId = written.config.kafka.groupId;
  }, 120_000);

  afterAll(async () => {
    await child?.kill();
    await redis?.quit();
    await replicaClient?.quit();
    await replica?.stop();
    await primary?.stop();
    await deleteTopics(brokers, [topic, `${topic}.dlq`]);
  });

  it('stops reading at its in-flight cap, moves no fence or offset and holds its memory while Redis is paused 20 s; then applies every event once', async () => {
    const engine = await startEngineProcess({ configFile, clockMs: NOW, maxBatch: MAX_BATCH, maxInFlight: MAX_IN_FLIGHT });
    child = engine;
    const sample = async (): Promise<Sample> => {
      const text = await (await fetch(`${engine.opsUrl}/metrics`)).text();
      return {
        at: Date.now(),
        consumed: metricValue(text, 'nudge_events_consumed_total'),
        applied: metricValue(text, 'nudge_events_applied_total'),
        committedBatches: metricValue(text, 'nudge_commits_total', 'outcome="committed"'),
        inFlight: metricValue(text, 'nudge_batches_in_flight'),
        rss: metricValue(text, 'nudge_process_resident_memory_bytes'),
        heap: metricValue(text, 'nudge_nodejs_heap_size_used_bytes'),
        // Read from the replica: the paused primary answers no one.
        fences: await readFences(replicaClient, namespace, topic, [0, 1, 2, 3]),
        offsets: await committedOffsets(brokers, groupId, topic),
        produced: sum(await highWatermarks(brokers, topic)),
      };
    };

    // Warm up: the first part of the log goes through normally.
    const split = 15_000;
    await produceLog(brokers, topic, log.slice(0, split));
    await waitForLanes(redis, namespace, topic, await highWatermarks(brokers, topic), 60_000);
    await waitForReplicaOffset(redis, replicaClient, 10_000);
    const warm = await sample();
    expect(warm.inFlight).toBe(0);

    // Pause Redis for every client, from a connection of the test's own; the flood arrives
    // during the pause.
    const pauser = new Redis(primary.url);
    const pausedAt = Date.now();
    expect(await pauser.call('CLIENT', 'PAUSE', String(PAUSE_MS), 'ALL')).toBe('OK');
    const pauseEnds = pausedAt + PAUSE_MS;
    const flood = produceLog(brokers, topic, log.slice(split));
    const samples: Sample[] = [];
    // Sampled until 1 s before the pause ends (no event marks "nothing happened"; polling is the way).
    while (Date.now() < pauseEnds - 1_000) {
      samples.push(await sample());
      await new Promise((r) => setTimeout(r, 250));
    }

    // Settled: the source has filled its in-flight cap and librdkafka its prefetch cap (16 MiB,
    // which the flood fills within a few seconds). From then on nothing may move or grow.
    const settled = samples.findIndex((x) => x.at - pausedAt >= SETTLE_MS);
    expect(settled, 'samples taken after the pause settled').toBeGreaterThanOrEqual(0);
    const during = samples.slice(settled);
    const first = during[0] as Sample;
    const last = during[during.length - 1] as Sample;
    const mb = (bytes: number): string => `${(bytes / 1_048_576).toFixed(1)} MiB`;
    // The checks below mean something: an engine that kept reading would have taken this in.
    const floodBytes = avgBytes * (log.length - split);
    expect(floodBytes, `the flood: ${mb(floodBytes)}`).toBeGreaterThan(3 * RSS_GROWTH_IN_PAUSE);
    const waiting = avgBytes * (last.produced - last.consumed);
    expect(waiting, `not taken by the lanes at the end of the pause: ${mb(waiting)}`).toBeGreaterThan(3 * RSS_GROWTH_IN_PAUSE);

    for (const x of samples) {
      // Fences: exactly where the warm-up left them, from the first instant of the pause.
      expect(x.fences).toEqual(warm.fences);
      expect(x.applied).toBe(warm.applied);
      expect(x.committedBatches).toBe(warm.committedBatches);
      expect(x.rss - warm.rss, `RSS ${mb(x.rss)} at ${x.at - pausedAt} ms into the pause, ${mb(warm.rss)} before it`).toBeLessThan(RSS_GROWTH_IN_PAUSE);
    }
    // Offsets: the group's committed offsets are the fences + 1, and do not move.
    for (const [p, offset] of warm.fences) expect(first.offsets.get(p) ?? 0, `committed offset of p${p}`).toBe(offset + 1);
    for (const x of during) {
      expect(x.offsets).toEqual(first.offsets);
      // The consumer stopped reading: the batches it holds are the cap, and no more enter lanes.
      expect(x.inFlight).toBe(MAX_IN_FLIGHT);
      expect(x.consumed).toBe(first.consumed);
      expect(x.rss - first.rss, `RSS ${mb(x.rss)} at ${x.at - pausedAt} ms, ${mb(first.rss)} when settled`).toBeLessThan(RSS_GROWTH_WHILE_SETTLED);
      expect(x.heap - first.heap, `heap ${mb(x.heap)} at ${x.at - pausedAt} ms, ${mb(first.heap)} when settled`).toBeLessThan(HEAP_GROWTH_WHILE_SETTLED);
    }
    // At most the in-flight batches entered lanes during the pause (one per lane actually runs).
    expect(first.consumed - warm.consumed).toBeLessThanOrEqual(MAX_IN_FLIGHT * MAX_BATCH);
    expect(last.produced - last.consumed, 'backlog at the end of the pause').toBeGreaterThanOrEqual(first.produced - first.consumed);

    await flood;
    await pauser.quit();
    // After the pause everything catches up, with no help: same process, same connections.
    await waitForLanes(redis, namespace, topic, await highWatermarks(brokers, topic), 120_000);
    const end = await sample();
    // Every message was read exactly once by this process, and the group offsets follow the fences.
    expect(end.consumed).toBe(log.length);
    await waitForCommittedOffsets(brokers, groupId, topic, end.fences, 15_000);
    await engine.stop();
    expect(await engine.exited).toMatchObject({ code: 0 });

    const queries = new StateQueries(redis, namespace, topic, compileStateSpec(loadedConfig));
    expect((await countMismatches(queries, ref, refSpec)).slice(0, 20)).toEqual([]);
    expect((await userMismatches(queries, ref, refSpec, NOW)).slice(0, 10)).toEqual([]);
  }, 240_000);
});

const sum = (m: Map<number, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

/** Polls the group's committed offsets (committed asynchronously) until they are the fences + 1. */
async function waitForCommittedOffsets(brokers: string, groupId: string, topic: string, fences: Map<number, number>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const offsets = await committedOffsets(brokers, groupId, topic);
    if ([...fences].every(([p, offset]) => (offsets.get(p) ?? 0) === offset + 1)) return;
    if (Date.now() > deadline) throw new Error(`committed offsets ${JSON.stringify([...offsets])} never reached the fences + 1 ${JSON.stringify([...fences])}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until the replica has everything the primary wrote (their replication offsets agree). */
async function waitForReplicaOffset(primary: Redis, replica: Redis, timeoutMs: number): Promise<void> {
  const offset = (info: string, field: string): number => Number(new RegExp(`${field}:(\\d+)`).exec(info)?.[1] ?? -1);
  const deadline = Date.now() + timeoutMs;
  const target = offset(await primary.info('replication'), 'master_repl_offset');
  while (offset(await replica.info('replication'), 'slave_repl_offset') < target) {
    if (Date.now() > deadline) throw new Error(`replica did not reach offset ${target} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function waitForReplicaLink(replica: Redis, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // Polled: the replica offers no notification for its link coming up.
  while (!/master_link_status:up/.test(await replica.info('replication'))) {
    if (Date.now() > deadline) throw new Error(`replica did not sync within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function committedOffsets(brokers: string, groupId: string, topic: string): Promise<Map<number, number>> {
  const [t] = await withAdmin(brokers, (admin) => admin.fetchOffsets({ groupId, topics: [topic] }));
  return new Map((t?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
}
