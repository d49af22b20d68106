import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import kafkaJs from '@confluentinc/kafka-javascript';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { laneKeys } from '../../src/state/keys.js';
import { StateQueries } from '../../src/state/queries.js';
import { createTopic, deleteTopics, uniqueName, withAdmin } from '../support/kafka-admin.js';
import { dropNamespace, highWatermarks, produceLog, testConfig, waitForLanes } from '../support/engine-harness.js';
import { readMetric, startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { appliedMessages, describeFences, readFences, waitForFences } from '../support/lane-fences.js';
import { countMismatches, referenceStageCounts, userMismatches } from '../support/reference-compare.js';
import { buildReferenceLog, type LogMessage } from '../support/reference-log.js';
import { runReference, type RefResult } from '../support/reference-model.js';
import { DAY, STATE_REF_SPEC, STATE_YAML, ZONE } from '../support/state-config.js';

/**
 * Exactly once across SIGKILL (issue 3, "Prove it"; DESIGN §5): the engine runs in a child
 * process (tests/support/engine-child.ts) on a seeded log with duplicates, late, too-late,
 * future and invalid events; it is killed without warning twice, mid-run, each time after its
 * lanes have committed part of the log in Redis but before they reached the end, and started
 * again in a new process in the same consumer group. A kill lands between a batch's Redis
 * commit and its Kafka offset commit more often than not, so the restarted engine re-reads
 * batches already applied: only the lane fence stands between them and double counting.
 * Then every day's counts and every user's state must equal the brute-force model, exactly,
 * and a whole replay by a new group must change nothing.
 *
 * The child's wall clock is fixed (NUDGE_TEST_CLOCK_MS), so the log keeps its future-dated
 * events: they are clamped to that clock in every process the same way.
 */
const PARTITIONS = 4;
const START = Date.UTC(2026, 2, 2, 0, 0); // 2026-03-02
const DAYS = 40;
const NOW = START + (DAYS + 2) * DAY;

const refSpec = STATE_REF_SPEC;

// session.timeout.ms at the broker's minimum (6 s): a SIGKILLed member never leaves the group,
// and its partitions go to the restarted one only when its session expires (45 s by default).
function yaml(topic: string, groupId: string, namespace: string): string {
  return `
kafka:
  brokers: [${inject('kafkaBrokers')}]
  topic: ${topic}
  dlqTopic: ${topic}.dlq
  groupId: ${groupId}
  librdkafka:
    session.timeout.ms: 6000
    heartbeat.interval.ms: 500
redis:
  url: ${inject('redisUrl')}
  keyPrefix: ${namespace}
http:
  port: 0
${STATE_YAML.trimStart()}`;
}

describe('exactly once across SIGKILL and restart', () => {
  const brokers = inject('kafkaBrokers');
  const topic = uniqueName('crash-events');
  const group = uniqueName('crash-group');
  const namespace = `c${randomBytes(4).toString('hex')}`;
  let redis: Redis;
  let log: LogMessage[];
  let ref: RefResult;
  let ends: Map<number, number>;
  let queries: StateQueries;
  const children: EngineProcess[] = [];
  const start = async (groupId = group): Promise<EngineProcess> => {
    const { file } = testConfig(yaml(topic, groupId, namespace));
    // Small batches: many commits per lane, so a kill lands between two of them.
    const child = await startEngineProcess({ configFile: file, clockMs: NOW, maxBatch: 100 });
    children.push(child);
    return child;
  };

  /**
   * After a kill: the fences (never lower than `previous`: they do not move back) and how many
   * applied messages the next process will read again, from the group's committed offsets (a
   * partition with none starts at 0, auto.offset.reset = earliest). A request the killed process
   * had already sent can still land after its death, so both are read until two reads 100 ms
   * apart agree (polling: nothing signals "the dead process' last requests are done").
   */
  const redeliveryAfterKill = async (previous: Map<number, number>): Promise<{ fences: Map<number, number>; redelivered: number }> => {
    const read = async () => {
      const fences = await readFences(redis, namespace, topic, ends.keys());
      const [committed] = await withAdmin(brokers, (admin) => admin.fetchOffsets({ groupId: group, topics: [topic] }));
      const next = new Map((committed?.partitions ?? []).map((p) => [p.partition, Math.max(0, Number(p.offset))]));
      return { fences, next, key: JSON.stringify([[...fences], [...next]]) };
    };
    const deadline = Date.now() + 10_000;
    let last = await read();
    for (;;) {
      await new Promise((r) => setTimeout(r, 100));
      const now = await read();
      if (now.key === last.key) break;
      if (Date.now() > deadline) throw new Error(`fences and offsets still moving after the kill: ${now.key}`);
      last = now;
    }
    for (const [p, offset] of previous) expect(last.fences.get(p), `fence of p${p} moved back`).toBeGreaterThanOrEqual(offset);
    let redelivered = 0;
    for (const [p, offset] of last.fences) redelivered += Math.max(0, offset + 1 - (last.next.get(p) ?? 0));
    return { fences: last.fences, redelivered };
  };

  beforeAll(async () => {
    redis = new Redis(inject('redisUrl'));
    log = buildReferenceLog({ seed: 7_300_417, users: 3_000, days: DAYS, events: 70_000, partitions: PARTITIONS, startMs: START, nowMs: NOW, reportingTimeZone: ZONE });
    ref = runReference(log.map((m) => m.ref), refSpec, NOW);
    await createTopic(brokers, topic, PARTITIONS);
    await createTopic(brokers, `${topic}.dlq`, 1);
    await produceLog(brokers, topic, log);
    ends = await highWatermarks(brokers, topic);
    const { config } = testConfig(yaml(topic, group, namespace));
    queries = new StateQueries(redis, namespace, topic, compileStateSpec(config));
  }, 120_000);

  afterAll(async () => {
    // SIGKILL: whatever is still running (after a failure) need not stop nicely.
    await Promise.all(children.map((c) => c.kill()));
    await dropNamespace(redis, namespace);
    await redis.quit();
    await deleteTopics(brokers, [topic, `${topic}.dlq`]);
  });

  it('has a log with every kind of trouble in it', () => {
    expect(ref.invalid).toBeGreaterThan(20);
    expect(ref.late).toBeGreaterThan(20);
    expect(ref.duplicates).toBeGreaterThan(10);
    expect(ref.clamped).toBeGreaterThan(10);
    expect(ref.users.size).toBeGreaterThan(800);
    expect([...ends.values()].reduce((a, b) => a + b, 0)).toBe(log.length);
  });

  it('matches the reference exactly after two SIGKILLs mid-run and restarts in the same group', async () => {
    const total = log.length;
    // Mid-run: some lane has committed part of the log in Redis, and some lane is short of its end.
    const midRun = (f: Map<number, number>): boolean =>
      [...f.values()].some((offset) => offset >= 0) && [...ends].some(([p, high]) => (f.get(p) ?? -1) < high - 1);

    const first = await start();
    const atFirstKill = await waitForFences(redis, namespace, topic, ends, (f) => appliedMessages(f) >= total * 0.2, 'first run to apply 20%', 90_000);
    await first.kill();
    expect(await first.exited).toMatchObject({ signal: 'SIGKILL' });
    const afterFirst = await redeliveryAfterKill(atFirstKill);
    expect(midRun(afterFirst.fences), describeFences(afterFirst.fences, ends)).toBe(true);

    const second = await start();
    await waitForFences(redis, namespace, topic, ends, (f) => appliedMessages(f) >= Math.max(total * 0.55, appliedMessages(afterFirst.fences) + 1_000), 'second run to apply 55%', 90_000);
    await second.kill();
    expect(await second.exited).toMatchObject({ signal: 'SIGKILL' });
    const afterSecond = await redeliveryAfterKill(afterFirst.fences);
    expect(midRun(afterSecond.fences), describeFences(afterSecond.fences, ends)).toBe(true);
    // The scenario only the fence survives usually happens here: the group's committed offsets
    // are behind what Redis applied (the offset commit follows the Redis commit and dies with
    // the process), so a restarted process re-reads messages whose effects are already in Redis.
    // Whether a kill lands in that gap is timing (it did not in one run of the full suite), so it
    // is reported rather than required; the fence's refusal of re-reads is proven for certain by
    // the replay test below and by tests/integration/lane-store.test.ts.
    if (afterFirst.redelivered + afterSecond.redelivered === 0) {
      console.warn('crash-restart: neither kill landed between a Redis commit and its offset commit; this run proved restarts, not re-reads');
    }

    const third = await start();
    await waitForLanes(redis, namespace, topic, ends, 120_000);
    // Timers due by the fixed clock record stage changes; wait until none is left due (the child
    // sweeps every 200 ms), so the recorded stage counts can be compared too.
    await waitForNoDueTimers(redis, namespace, topic, [...ends.keys()], NOW, 30_000);
    // The third process read the rest of the log and, starting at the group's committed offset
    // (never past a fence), at most the messages the second applied without committing them.
    const remaining = total - appliedMessages(afterSecond.fences);
    const consumed = await readMetric(third.opsUrl, 'nudge_events_consumed_total');
    expect(consumed).toBeGreaterThanOrEqual(remaining);
    expect(consumed).toBeLessThanOrEqual(remaining + afterSecond.redelivered);
    await third.stop();
    expect(await third.exited).toMatchObject({ code: 0 });

    expect((await countMismatches(queries, ref, refSpec)).slice(0, 20)).toEqual([]);
    expect((await userMismatches(queries, ref, refSpec, NOW)).slice(0, 10)).toEqual([]);
    // Recorded stages (counters moved by the same commit as the fence) are not double counted.
    expect(await queries.stageCounts()).toEqual(referenceStageCounts(ref, refSpec, NOW));
  }, 300_000);

  it('dead-letters every invalid message, each source offset at least once and nothing else', async () => {
    const { Kafka, logLevel } = kafkaJs.KafkaJS;
    const consumer = new Kafka({ kafkaJS: { brokers: brokers.split(','), logLevel: logLevel.NOTHING } }).consumer({
      kafkaJS: { groupId: uniqueName('crash-dlq'), fromBeginning: true },
    });
    const dlqEnd = [...(await highWatermarks(brokers, `${topic}.dlq`)).values()].reduce((a, b) => a + b, 0);
    const seen = new Set<string>();
    let read = 0;
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: `${topic}.dlq` });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`read ${read} of ${dlqEnd} dead letters`)), 60_000);
        void consumer.run({
          eachMessage: async ({ message }) => {
            seen.add(`${String(message.headers?.['nudge-source-partition'])}/${String(message.headers?.['nudge-source-offset'])}`);
            if (++read >= dlqEnd) {
              clearTimeout(timer);
              resolve();
            }
          },
        });
      });
    } finally {
      await consumer.disconnect();
    }
    // At least once: a kill after the dead-letter send and before the commit sends them again.
    const invalid = new Set<string>();
    const next = new Map<number, number>();
    for (const m of log) {
      const offset = next.get(m.partition) ?? 0;
      next.set(m.partition, offset + 1);
      if (m.ref.event === null) invalid.add(`${m.partition}/${offset}`);
    }
    expect(read).toBeGreaterThanOrEqual(invalid.size);
    expect([...seen].sort()).toEqual([...invalid].sort());
  }, 90_000);

  it('changes nothing when a new group replays the whole topic from the earliest offset', async () => {
    const before = await snapshot();
    const replay = await start(uniqueName('crash-replay'));
    const deadline = Date.now() + 120_000;
    // The replaying process reads every message; its lanes must refuse all of them (the fence).
    while ((await readMetric(replay.opsUrl, 'nudge_events_consumed_total')) < log.length) {
      if (Date.now() > deadline) throw new Error(`replay read ${await readMetric(replay.opsUrl, 'nudge_events_consumed_total')} of ${log.length} messages`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await readMetric(replay.opsUrl, 'nudge_events_applied_total')).toBe(0);
    expect(await readMetric(replay.opsUrl, 'nudge_commits_total', 'outcome="committed"')).toBe(0);
    await replay.stop();
    expect(await snapshot()).toEqual(before);
    expect((await countMismatches(queries, ref, refSpec)).slice(0, 20)).toEqual([]);
  }, 180_000);

  /** Every counter hash and user state of the namespace, raw. */
  async function snapshot(): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for (const p of ends.keys()) {
      const k = laneKeys(namespace, topic, p);
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${k.tag}:*`, 'COUNT', 1000);
        for (const key of keys) {
          const type = await redis.type(key);
          // The fence's epoch moves on every claim; everything else must not move at all.
          if (key === k.fence) out[key] = await redis.hmget(key, 'offset', 'streamTime');
          else if (type === 'hash') out[key] = await redis.hgetall(key);
          else if (type === 'string') out[key] = await redis.get(key);
          else if (type === 'zset') out[key] = await redis.zrange(key, '0', '-1', 'WITHSCORES');
          else out[key] = type;
        }
        cursor = next;
      } while (cursor !== '0');
    }
    return out;
  }
});

/** Polls each lane's timer set until nothing in it is due at `now`. */
async function waitForNoDueTimers(redis: Redis, namespace: string, topic: string, partitions: number[], now: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const due = await Promise.all(partitions.map((p) => redis.zcount(laneKeys(namespace, topic, p).timers, '-inf', now)));
    if (due.every((n) => n === 0)) return;
    if (Date.now() > deadline) throw new Error(`timers still due after ${timeoutMs} ms: ${due.join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
