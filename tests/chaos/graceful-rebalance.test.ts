import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { StateQueries } from '../../src/state/queries.js';
import { createTopic, deleteTopics, uniqueName, withAdmin } from '../support/kafka-admin.js';
import { dropNamespace, highWatermarks, produceLog, testConfig } from '../support/engine-harness.js';
import { readMetric, startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { appliedMessages, describeFences, readFences, waitForFences } from '../support/lane-fences.js';
import { buildReferenceLog, type LogMessage } from '../support/reference-log.js';
import { runReference, type RefResult } from '../support/reference-model.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';
import { webhookSecret } from '../support/touch-harness.js';
import {
  DAY,
  STATE_REF_SPEC,
  ZONE,
  chaosYaml,
  checkDeliveries,
  checkJobs,
  dropQueue,
  expectedTouches,
  expectDeviceSetsEqualModel,
  expectStateEqualsModel,
  finishRun,
  until,
  type ExpectedTouch,
} from '../support/chaos-journeys.js';

/**
 * Graceful stops and rebalances (issue 6, item 2). A seeded log (tests/support/reference-log.ts)
 * with journeys on (tests/support/chaos-journeys.ts) runs through engines in child processes
 * of one consumer group: the engine is stopped with SIGTERM five times mid-run and started
 * again, and a second instance joins the group mid-run (taking some partitions: a rebalance
 * while batches are in flight) and then leaves it with SIGTERM (its partitions go back: a
 * second rebalance). The second part of the log is produced while both instances run, so
 * both have work when the group changes.
 *
 * Afterwards: zero duplicates and zero loss — every count and every user's state equals the
 * brute-force model; per-user order — each user's last 32 applied event ids, kept counter
 * times and streaks equal the model's, which reads the log in partition order (an event of a
 * user applied twice, skipped or out of order changes them); and every touch of the
 * independent reference delivered exactly once (no stop here interrupts a send, so not even a
 * repeat of a webhook-id is allowed), signed, and no other.
 */
const PARTITIONS = 6;
const START = Date.UTC(2026, 2, 2, 0, 0); // 2026-03-02
const DAYS = 40;
const NOW = START + (DAYS + 2) * DAY;
const EVENTS = 80_000;
/** The share of the log produced before the first engine starts; the rest while two run. */
const FIRST_PART = 0.6;

describe('SIGTERM five times and a second instance joining and leaving the group mid-run', () => {
  const brokers = inject('kafkaBrokers');
  const topic = uniqueName('chaos-graceful');
  const group = uniqueName('chaos-graceful-group');
  const namespace = `cg${randomBytes(4).toString('hex')}`;
  const queueName = `chaos-graceful-${randomBytes(3).toString('hex')}`;
  const secret = webhookSecret();
  let receiver: WebhookReceiver;
  let redis: Redis;
  let bull: Queue;
  let log: LogMessage[];
  let ref: RefResult;
  let expected: ExpectedTouch[];
  let queries: StateQueries;
  let configFile: string;
  const children: EngineProcess[] = [];
  const timings: Record<string, number> = {};
  const stopMs: number[] = [];
  /** After each stop: messages applied in Redis whose offsets the group has not committed. */
  const behind: number[] = [];
  let sigterms = 0;
  const commitOutcomes: Record<string, number> = {};

  /** Messages per partition in the first `n` of the log: the topic's offsets once they are produced. */
  const endsOf = (n: number): Map<number, number> => {
    const ends = new Map<number, number>(Array.from({ length: PARTITIONS }, (_, p) => [p, 0]));
    for (const m of log.slice(0, n)) ends.set(m.partition, (ends.get(m.partition) ?? 0) + 1);
    return ends;
  };
  const start = async (): Promise<EngineProcess> => {
    // Small batches: many commits per lane, so a stop or a rebalance finds batches in flight.
    const child = await startEngineProcess({ configFile, clockMs: NOW, maxBatch: 100 });
    children.push(child);
    return child;
  };
  const committedOffsets = async (): Promise<Map<number, number>> => {
    const [committed] = await withAdmin(brokers, (admin) => admin.fetchOffsets({ groupId: group, topics: [topic] }));
    return new Map((committed?.partitions ?? []).map((p) => [p.partition, Math.max(0, Number(p.offset))]));
  };
  /**
   * SIGTERM; the stop must be clean (exit 0, nothing abandoned). Records how long it took and
   * how far the group's committed offsets are behind the fences (the next owner resumes at the
   * fence, so that gap is re-read by nobody; it is reported, not required to be zero).
   */
  const gracefulStop = async (child: EngineProcess, ends: Map<number, number>, previous: Map<number, number>): Promise<Map<number, number>> => {
    // What its lanes' commits met: a batch refused by a newer owner's epoch (a zombie after a
    // rebalance) or by the fence (a re-read). Reported: whether one happens is timing.
    for (const outcome of ['stale-epoch', 'already-applied']) {
      const n = await readMetric(child.opsUrl, 'nudge_commits_total', `outcome="${outcome}"`);
      commitOutcomes[outcome] = (commitOutcomes[outcome] ?? 0) + n;
    }
    const t = Date.now();
    await child.stop();
    stopMs.push(Date.now() - t);
    expect(await child.exited, child.stderrTail()).toMatchObject({ code: 0 });
    expect(child.stderrTail()).not.toContain('without finishing in-flight work');
    sigterms++;
    const fences = await readFences(redis, namespace, topic, ends.keys());
    for (const [p, offset] of previous) expect(fences.get(p), `fence of p${p} moved back`).toBeGreaterThanOrEqual(offset);
    const committed = await committedOffsets();
    let gap = 0;
    for (const [p, offset] of fences) gap += Math.max(0, offset + 1 - (committed.get(p) ?? 0));
    behind.push(gap);
    return fences;
  };
  const midRun = (f: Map<number, number>, ends: Map<number, number>): boolean => [...ends].some(([p, high]) => (f.get(p) ?? -1) < high - 1);
  const progress = (ends: Map<number, number>, atLeast: number, what: string) =>
    waitForFences(redis, namespace, topic, ends, (f) => appliedMessages(f) >= atLeast, what, 150_000);

  beforeAll(async () => {
    const t0 = Date.now();
    receiver = await startWebhookReceiver(secret);
    redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
    bull = new Queue(queueName, { connection: redis });
    log = buildReferenceLog({ seed: 6_200_602, users: 2_500, days: DAYS, events: EVENTS, partitions: PARTITIONS, startMs: START, nowMs: NOW, reportingTimeZone: ZONE });
    ref = runReference(log.map((m) => m.ref), STATE_REF_SPEC, NOW);
    ({ touches: expected } = expectedTouches(log, NOW));
    await createTopic(brokers, topic, PARTITIONS);
    await createTopic(brokers, `${topic}.dlq`, 1);
    const cfg = testConfig(chaosYaml({ brokers, topic, groupId: group, redisUrl: inject('redisUrl'), namespace, queue: queueName, receiverUrl: receiver.url, secret }));
    configFile = cfg.file;
    queries = new StateQueries(redis, namespace, topic, compileStateSpec(cfg.config));
    timings.setup = Date.now() - t0;
  }, 120_000);

  afterAll(async () => {
    await Promise.all(children.map((c) => c.kill()));
    await receiver?.close();
    await bull?.close();
    if (redis) {
      await dropNamespace(redis, namespace);
      await dropQueue(redis, queueName);
      await redis.quit();
    }
    await deleteTopics(brokers, [topic, `${topic}.dlq`]);
    console.info(`graceful-rebalance timings (ms): ${JSON.stringify(timings)}; SIGTERM stops took ${JSON.stringify(stopMs)} ms; committed offsets behind the fences after each: ${JSON.stringify(behind)} messages; refused commits ${JSON.stringify(commitOutcomes)}`);
  });

  it('loses nothing, duplicates nothing and keeps each user\'s order; every touch is delivered exactly once', async () => {
    const t0 = Date.now();
    const firstPart = Math.floor(log.length * FIRST_PART);
    await produceLog(brokers, topic, log.slice(0, firstPart));
    const ends1 = endsOf(firstPart);
    expect(await highWatermarks(brokers, topic)).toEqual(ends1);
    timings.produced1 = Date.now() - t0;

    // SIGTERMs 1-3, at a quarter, half and three quarters of the first part.
    let fences = new Map<number, number>();
    for (const share of [0.25, 0.5, 0.75]) {
      const child = await start();
      await progress(ends1, Math.max(firstPart * share, appliedMessages(fences) + 1_000), `run to apply ${share * 100}% of the first part`);
      fences = await gracefulStop(child, ends1, fences);
      expect(midRun(fences, ends1), describeFences(fences, ends1)).toBe(true);
      timings[`sigterm${sigterms}`] = Date.now() - t0;
    }

    // A second instance joins: the group rebalances with batches in flight, both own lanes.
    const a = await start();
    await until('the first instance to own every lane', 60_000, async () => (await readMetric(a.opsUrl, 'nudge_lanes_assigned')) === PARTITIONS);
    const b = await start();
    await until('the second instance to own lanes', 60_000, async () => (await readMetric(b.opsUrl, 'nudge_lanes_assigned')) > 0);
    await until('the first instance to give lanes up', 60_000, async () => (await readMetric(a.opsUrl, 'nudge_lanes_assigned')) < PARTITIONS);
    timings.joined = Date.now() - t0;
    // The rest of the log arrives while both run.
    await produceLog(brokers, topic, log.slice(firstPart));
    const ends = await highWatermarks(brokers, topic);
    expect(ends).toEqual(endsOf(log.length));
    timings.produced2 = Date.now() - t0;
    await until('the second instance to apply events', 60_000, async () => (await readMetric(b.opsUrl, 'nudge_events_applied_total')) > 0);
    const appliedByB = await readMetric(b.opsUrl, 'nudge_events_applied_total');
    // The second instance leaves (SIGTERM, its 'sixth' graceful stop): its lanes go back.
    fences = await gracefulStop(b, ends, fences);
    sigterms--; // not one of the main instance's five
    expect(midRun(fences, ends), describeFences(fences, ends)).toBe(true);
    await until('the first instance to own every lane again', 60_000, async () => (await readMetric(a.opsUrl, 'nudge_lanes_assigned')) === PARTITIONS);
    timings.left = Date.now() - t0;
    console.info(`graceful-rebalance: the second instance applied ${appliedByB} events before it left`);

    // SIGTERMs 4 and 5.
    await progress(ends, Math.max(log.length * 0.8, appliedMessages(fences) + 1_000), 'run to apply 80%');
    fences = await gracefulStop(a, ends, fences);
    expect(midRun(fences, ends), describeFences(fences, ends)).toBe(true);
    timings.sigterm4 = Date.now() - t0;
    const fifth = await start();
    await progress(ends, Math.max(log.length * 0.9, appliedMessages(fences) + 1_000), 'run to apply 90%');
    fences = await gracefulStop(fifth, ends, fences);
    expect(midRun(fences, ends), describeFences(fences, ends)).toBe(true);
    timings.sigterm5 = Date.now() - t0;
    expect(sigterms).toBe(5);

    // The last one finishes the log and delivers.
    const last = await start();
    await finishRun({ redis, namespace, topic, ends, expected, requests: receiver.requests, queue: bull, onApplied: () => (timings.applied = Date.now() - t0) });
    timings.delivered = Date.now() - t0;
    await last.stop();
    expect(await last.exited).toMatchObject({ code: 0 });

    // Nothing lost or applied twice, each user's order kept.
    await expectStateEqualsModel(queries, ref, NOW);
    await expectDeviceSetsEqualModel(redis, namespace, topic, ref);

    // Every touch exactly once: not even a repeated webhook-id.
    const report = checkDeliveries(receiver.requests, expected, secret);
    console.info(`graceful-rebalance: ${report.distinct} touches delivered of ${expected.length} expected, ${report.repeats} repeated deliveries`);
    expect(report.problems.slice(0, 20).join('\n'), `${report.problems.length} problems`).toBe('');
    expect(report.distinct).toBe(expected.length);
    expect(report.repeats).toBe(0);
    const jobs = await checkJobs(bull, expected, ['sent']);
    expect(jobs.problems.slice(0, 20)).toEqual([]);
    timings.total = Date.now() - t0;
  }, 600_000);
});
