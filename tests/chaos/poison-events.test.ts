import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AppEvent } from '../../src/contract/event.js';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { applyEvents } from '../../src/state/decide.js';
import { Random } from '../../src/tools/loadgen/random.js';
import { StateQueries } from '../../src/state/queries.js';
import { appEvent, malformed, produceStream, watchStalls, type Malformed, type MalformedKind, type StallReport } from '../support/chaos-traffic.js';
import { readTopic } from '../support/topic-reader.js';
import { until } from '../support/poll.js';
import { dropNamespace, highWatermarks, testConfig, waitForLanes } from '../support/engine-harness.js';
import { createTopic, deleteTopics, uniqueName } from '../support/kafka-admin.js';
import { countMismatches, userMismatches } from '../support/reference-compare.js';
import { buildReferenceLog, type LogMessage } from '../support/reference-log.js';
import { runReference, type RefResult } from '../support/reference-model.js';
import { DAY, STATE_REF_SPEC, ZONE, stateYaml } from '../support/state-config.js';

/**
 * Poison events (issue 6 item 5): 100 malformed messages hidden among 50,000 valid ones, on four
 * partitions, through the real broker into the engine and real Redis. Six kinds: undecodable
 * bytes, valid events cut short, decodable events breaking one contract rule, events over the
 * 64 KiB limit, props over their byte limit, and valid events the state step throws on (the
 * test's decide step throws on them, as tests/integration/poison-event.test.ts does: no real
 * event is known to make the pure step throw, and the seam is how the isolation is proven).
 *
 * Each must land in the dead-letter topic exactly once, matched by its source partition and
 * offset headers, with its original key and bytes and a reason; every valid event around them
 * must be applied (state equals the brute-force reference); and no partition may stall: the
 * lanes' fences are sampled every 50 ms, and the longest time a lane with messages left made
 * no progress must stay under 5 s.
 */
const PARTITIONS = 4;
const START = Date.UTC(2026, 5, 1);
const DAYS = 30;
const NOW = START + (DAYS + 1) * DAY;
const VALID = 50_000;
const MAX_STALL_MS = 5_000;
const RATE = 4_000;
const KINDS: Array<[MalformedKind, number]> = [
  ['random-bytes', 20],
  ['truncated', 20],
  ['invalid-field', 25],
  ['oversized', 10],
  ['props-too-large', 10],
  ['poison', 15],
];
const POISON = 'poison-';

const refSpec = STATE_REF_SPEC;

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
${stateYaml({ sweepInterval: null }).trimStart()}`;
}

/** The real state step, except that it throws — mid-batch, quoting the user — on a poison event. */
const poisonedDecide: typeof applyEvents = (events, ...rest) => {
  for (const e of events) if (e.eventId.startsWith(POISON)) throw new TypeError(`cannot handle user ${e.userId}`);
  return applyEvents(events, ...rest);
};

interface Planted extends Malformed {
  partition: number;
  offset: number;
}

describe('100 poison events among 50,000 valid ones', () => {
  const brokers = inject('kafkaBrokers');
  const topic = uniqueName('poison-chaos');
  const dlqTopic = `${topic}.dlq`;
  const namespace = `pc${randomBytes(4).toString('hex')}`;
  let redis: Redis;
  let log: LogMessage[];
  let planted: Planted[];
  let ref: RefResult;
  let ends: Map<number, number>;
  let engine: Engine;
  let stalls: StallReport;
  let runMs = 0;

  beforeAll(async () => {
    redis = new Redis(inject('redisUrl'));
    // The generator's own invalid deliveries are dropped: the 100 malformed messages are ours,
    // each of a known kind, at seeded places.
    const valid = buildReferenceLog({ seed: 5_050_100, users: 2_000, days: DAYS, events: 50_400, partitions: PARTITIONS, startMs: START, nowMs: NOW, reportingTimeZone: ZONE })
      .filter((m) => m.ref.event !== null)
      .slice(0, VALID);
    expect(valid).toHaveLength(VALID);
    // The loadgen's seeded PRNG: a failing run replays with its seed.
    const rng = new Random(505);
    const random = () => rng.next();
    const bad = new Map<number, Malformed[]>(); // index in `valid` -> malformed messages before it
    let n = 0;
    for (const [kind, count] of KINDS) {
      for (let i = 0; i < count; i++) {
        const at = Math.floor(random() * VALID);
        const neighbour = (valid[at] as LogMessage).ref.event as NonNullable<LogMessage['ref']['event']>;
        // A neighbour's user and time: the bad message sits among that user's own events.
        const base: AppEvent = appEvent({ eventId: `bad-${n++}`, userId: neighbour.userId, timeMs: neighbour.timeMs, name: neighbour.name, tz: neighbour.tz, channel: neighbour.channel });
        bad.set(at, [...(bad.get(at) ?? []), malformed(kind, base, random, POISON)]);
      }
    }
    log = [];
    planted = [];
    const next = new Map<number, number>();
    const push = (m: LogMessage, bad?: Malformed): void => {
      const offset = next.get(m.partition) ?? 0;
      next.set(m.partition, offset + 1);
      log.push(m);
      if (bad) planted.push({ ...bad, partition: m.partition, offset });
    };
    valid.forEach((m, i) => {
      for (const b of bad.get(i) ?? []) push({ partition: m.partition, key: b.key, value: b.value, ref: { partition: m.partition, event: null } }, b);
      push(m);
    });
    ref = runReference(log.map((m) => m.ref), refSpec, NOW);
    await createTopic(brokers, topic, PARTITIONS);
    await createTopic(brokers, dlqTopic, 1);
  }, 180_000);

  afterAll(async () => {
    await engine?.stop();
    await dropNamespace(redis, namespace);
    await redis.quit();
    await deleteTopics(brokers, [topic, dlqTopic]);
  });

  it('has 100 malformed messages of six kinds on every partition', () => {
    expect(planted).toHaveLength(100);
    expect(log).toHaveLength(VALID + 100);
    expect(ref.invalid).toBe(100);
    expect(new Set(planted.map((p) => p.partition)).size).toBe(PARTITIONS);
  });

  it('processes every valid event, produced live, with no partition stalled for 5 s', async () => {
    const { config } = testConfig(yaml(topic, uniqueName('poison-chaos-group'), namespace));
    engine = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry(), clock: () => NOW, decide: poisonedDecide, maxBatch: 500 });
    await engine.start();
    await until('the engine owns every partition', 60_000, () => engine.ownedPartitions().length === PARTITIONS);
    // Live traffic at 4,000 messages/s (the engine alone drains ~5,000/s on this machine): the
    // stall measure then sees the pipeline, not a pre-produced backlog waiting behind the other
    // partitions' prefetched data at start-up (which measures librdkafka's fetch order instead).
    const queued = new Map<number, number>();
    const watch = watchStalls({ redis, namespace, topic, partitions: [...Array(PARTITIONS).keys()], queued: () => queued });
    const started = Date.now();
    try {
      await produceStream(brokers, topic, log, { ratePerSec: RATE, onQueued: (p) => queued.set(p, (queued.get(p) ?? 0) + 1) });
      ends = await highWatermarks(brokers, topic);
      expect([...ends.values()].reduce((a, b) => a + b, 0)).toBe(log.length);
      await waitForLanes(redis, namespace, topic, ends, 240_000);
    } finally {
      stalls = await watch.stop();
    }
    runMs = Date.now() - started;
    await engine.idle();
    console.log(`poison-events: ${log.length} messages produced at ${RATE}/s and applied in ${runMs} ms; longest stall per partition (ms): ${JSON.stringify(Object.fromEntries(stalls.longestStallMs))} at ${JSON.stringify(Object.fromEntries(stalls.longestStallAt))} over ${stalls.samples} samples`);
    expect(stalls.samples).toBeGreaterThan(10);
    for (const [p, ms] of stalls.longestStallMs) expect(ms, `partition ${p} stood still with a backlog`).toBeLessThan(MAX_STALL_MS);

    const queries = new StateQueries(redis, namespace, topic, compileStateSpec(config));
    expect((await countMismatches(queries, ref, refSpec)).slice(0, 20)).toEqual([]);
    expect((await userMismatches(queries, ref, refSpec, NOW)).slice(0, 10)).toEqual([]);
    const invalid = (await engine.metrics.eventsInvalid.get()).values.reduce((sum, v) => sum + v.value, 0);
    expect(invalid).toBe(100);
  }, 400_000);

  it('dead-letters each malformed message exactly once, with its original key and bytes and a reason', async () => {
    const total = [...(await highWatermarks(brokers, dlqTopic)).values()].reduce((a, b) => a + b, 0);
    const letters = await readTopic(brokers, dlqTopic, { count: Math.max(total, 100), timeoutMs: 60_000 });
    expect(total).toBe(100);
    const bySource = new Map<string, typeof letters>();
    for (const l of letters) {
      const at = `${l.headers['nudge-source-partition']}/${l.headers['nudge-source-offset']}`;
      bySource.set(at, [...(bySource.get(at) ?? []), l]);
    }
    const problems: string[] = [];
    for (const p of planted) {
      const got = bySource.get(`${p.partition}/${p.offset}`) ?? [];
      bySource.delete(`${p.partition}/${p.offset}`);
      if (got.length !== 1) {
        problems.push(`${p.kind} at ${p.partition}/${p.offset}: ${got.length} dead letters`);
        continue;
      }
      const l = got[0]!;
      const code = l.headers['nudge-error-code'] ?? '';
      const reason = l.headers['nudge-error'] ?? '';
      if (Buffer.compare(l.value, p.value) !== 0) problems.push(`${p.kind} at ${p.partition}/${p.offset}: bytes differ`);
      if (l.key !== p.key) problems.push(`${p.kind} at ${p.partition}/${p.offset}: key differs`);
      if (p.code === null ? !code.startsWith('NUDGE_EVENT_') : code !== p.code) problems.push(`${p.kind} at ${p.partition}/${p.offset}: code ${code}, expected ${p.code ?? 'NUDGE_EVENT_*'}`);
      if (reason.length < 20) problems.push(`${p.kind} at ${p.partition}/${p.offset}: reason "${reason}"`);
      // The reason says what was wrong, never what the event said (the key is the user id).
      if (p.key.length > 3 && reason.includes(p.key)) problems.push(`${p.kind} at ${p.partition}/${p.offset}: reason quotes the user id`);
    }
    for (const [at, extra] of bySource) problems.push(`unexpected dead letter(s) at ${at}: ${extra.length}`);
    expect(problems).toEqual([]);
    console.log(`poison-events: dead-letter codes ${JSON.stringify(countBy(letters.map((l) => l.headers['nudge-error-code'] ?? '')))}`);
  }, 120_000);
});

function countBy(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}
