import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { StateQueries } from '../../src/state/queries.js';
import { createTopic, deleteTopics, uniqueName, withAdmin } from '../support/kafka-admin.js';
import { dropNamespace, highWatermarks, produceLog, testConfig } from '../support/engine-harness.js';
import { startEngineProcess, type EngineProcess } from '../support/engine-process.js';
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
  outboxIds,
  expectDeviceSetsEqualModel,
  expectStateEqualsModel,
  finishRun,
  until,
  type ExpectedTouch,
} from '../support/chaos-journeys.js';

/**
 * Engine crashes (issue 6, item 1). A 100,000-event seeded log (tests/support/reference-log.ts:
 * duplicates, late, too-late, future and invalid events) runs through the engine in a child
 * process with four of the banking playbook's journeys on, delivering by signed webhook to a
 * real loopback server. The engine dies six times without warning (SIGKILL):
 * - three times at chosen points, by the child's own hook (NUDGE_TEST_CRASH_AT): right after a
 *   commit that wrote touches, before the relay is woken (committed, not enqueued: that process
 *   runs no relay, so nothing it committed is enqueued); after the
 *   relay's `addBulk`, before it clears the outbox (enqueued, not cleared); and mid-batch,
 *   after a batch's Redis commit and before its Kafka offset commit (applied, to be re-read);
 * - three times at moments the test picks by progress (45%, 65%, 85% of the log applied), with
 *   whatever was in flight — relay passes, worker sends — cut off.
 * A seventh process finishes the log. Then every count and every user's state must equal the
 * brute-force model (tests/support/reference-model.ts), each user's last 32 applied event ids
 * in order included, and every touch of the independent reference (tests/support/chaos-
 * journeys.ts) must have reached the receiver under its one touch id, signed, with the
 * reference's data; none may arrive that the reference does not expect.
 *
 * A send cut off by a kill after the provider answered and before the send ledger recorded it
 * is sent again with the same `webhook-id` (the idempotency key the receiver dedupes on: the
 * Standard Webhooks contract, DESIGN §5). Such repeats are counted and bounded by the sends in
 * flight at the kills; workers killed mid-send are tests/integration/touches-crash.test.ts's
 * subject, so this test does not slow the receiver down to provoke them.
 */
const PARTITIONS = 4;
const START = Date.UTC(2026, 2, 2, 0, 0); // 2026-03-02
const DAYS = 40;
const NOW = START + (DAYS + 2) * DAY;
const EVENTS = 100_000;
const CONCURRENCY = 8;

describe('engine SIGKILLs at chosen points and at random moments during a 100,000-event run with journeys', () => {
  const brokers = inject('kafkaBrokers');
  const topic = uniqueName('chaos-crash');
  const group = uniqueName('chaos-crash-group');
  const namespace = `cc${randomBytes(4).toString('hex')}`;
  const queueName = `chaos-crash-${randomBytes(3).toString('hex')}`;
  const secret = webhookSecret();
  let receiver: WebhookReceiver;
  let redis: Redis;
  let bull: Queue;
  let log: LogMessage[];
  let ref: RefResult;
  let expected: ExpectedTouch[];
  let ends: Map<number, number>;
  let queries: StateQueries;
  let configFile: string;
  const children: EngineProcess[] = [];
  const timings: Record<string, number> = {};
  let kills = 0;

  const start = async (crashAt?: string, o: { relay?: boolean } = {}): Promise<EngineProcess> => {
    // Small batches: many commits per lane, so kills land between them.
    const child = await startEngineProcess({ configFile, clockMs: NOW, maxBatch: 100, ...(crashAt !== undefined ? { crashAt } : {}), ...o });
    children.push(child);
    return child;
  };
  const fences = () => readFences(redis, namespace, topic, ends.keys());
  const committedOffsets = async (): Promise<Map<number, number>> => {
    const [committed] = await withAdmin(brokers, (admin) => admin.fetchOffsets({ groupId: group, topics: [topic] }));
    return new Map((committed?.partitions ?? []).map((p) => [p.partition, Math.max(0, Number(p.offset))]));
  };
  /** Waits for a child to kill itself at its crash point (a deadline: the point may never come). */
  const crashed = async (child: EngineProcess, what: string): Promise<void> => {
    const exit = await Promise.race([child.exited, new Promise<null>((r) => setTimeout(() => r(null), 120_000))]);
    if (exit === null) throw new Error(`${what}: the child did not reach its crash point within 120 s:\n${child.stderrTail()}`);
    expect(exit, child.stderrTail()).toMatchObject({ signal: 'SIGKILL' });
    expect(child.stderrTail()).toContain('crashing at');
    kills++;
  };
  /**
   * After a kill, requests the dead process had already sent may still land; waits until the
   * fences and the group's offsets stop moving (two reads 200 ms apart agree).
   */
  const settledAfterKill = async (): Promise<{ fences: Map<number, number>; committed: Map<number, number> }> => {
    let last = '';
    return until('fences and offsets to stop moving after the kill', 15_000, async () => {
      const f = await fences();
      const c = await committedOffsets();
      const key = JSON.stringify([[...f], [...c]]);
      const same = key === last;
      last = key;
      return same ? { fences: f, committed: c } : null;
    }, 200);
  };
  const midRun = (f: Map<number, number>): boolean => [...ends].some(([p, high]) => (f.get(p) ?? -1) < high - 1);

  beforeAll(async () => {
    const t0 = Date.now();
    receiver = await startWebhookReceiver(secret);
    redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
    bull = new Queue(queueName, { connection: redis });
    log = buildReferenceLog({ seed: 6_100_601, users: 3_000, days: DAYS, events: EVENTS, partitions: PARTITIONS, startMs: START, nowMs: NOW, reportingTimeZone: ZONE });
    ref = runReference(log.map((m) => m.ref), STATE_REF_SPEC, NOW);
    ({ touches: expected } = expectedTouches(log, NOW));
    await createTopic(brokers, topic, PARTITIONS);
    await createTopic(brokers, `${topic}.dlq`, 1);
    await produceLog(brokers, topic, log);
    ends = await highWatermarks(brokers, topic);
    const cfg = testConfig(chaosYaml({ brokers, topic, groupId: group, redisUrl: inject('redisUrl'), namespace, queue: queueName, receiverUrl: receiver.url, secret }));
    configFile = cfg.file;
    queries = new StateQueries(redis, namespace, topic, compileStateSpec(cfg.config));
    timings.setup = Date.now() - t0;
  }, 240_000);

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
    console.info(`engine-crash timings (ms): ${JSON.stringify(timings)}`);
  });

  it('has a log with every kind of trouble and thousands of touches in it', () => {
    expect(log.length).toBeGreaterThanOrEqual(EVENTS * 0.95);
    expect([...ends.values()].reduce((a, b) => a + b, 0)).toBe(log.length);
    expect(ref.invalid).toBeGreaterThan(20);
    expect(ref.late).toBeGreaterThan(20);
    expect(ref.duplicates).toBeGreaterThan(10);
    expect(ref.clamped).toBeGreaterThan(10);
    const byJourney = new Map<string, number>();
    for (const t of expected) byJourney.set(t.journeyId, (byJourney.get(t.journeyId) ?? 0) + 1);
    console.info(`engine-crash: ${log.length} messages, ${ref.users.size} users, ${expected.length} touches expected ${JSON.stringify(Object.fromEntries(byJourney))}`);
    for (const j of ['welcome', 'salary-autoinvest', 'fund-thanks', 'transfer-receipt']) expect(byJourney.get(j) ?? 0, j).toBeGreaterThan(50);
  });

  it('after six SIGKILLs, state equals the reference and every expected touch is delivered once, none extra', async () => {
    const t0 = Date.now();

    // 1. Committed, not enqueued: the 40th commit that wrote touches, before the relay is woken.
    // This process runs no relay: with one, a pass woken by the 39th commit could read the 40th's
    // entries and add them to BullMQ before the kill landed (it did once in CI), and the check
    // below could not tell whether the window was hit. The later processes relay all of it.
    await crashed(await start('touches-committed:40', { relay: false }), 'touches-committed');
    const after1 = await settledAfterKill();
    const committedOnly = await outboxIds(redis, namespace, topic, ends.keys());
    const notQueued = (await Promise.all(committedOnly.map((id) => bull.getJob(id)))).filter((j) => j === undefined || j === null).length;
    expect(notQueued, `touches committed and not in BullMQ (of ${committedOnly.length} in the outboxes)`).toBeGreaterThan(0);
    expect(midRun(after1.fences), describeFences(after1.fences, ends)).toBe(true);
    timings.crash1 = Date.now() - t0;

    // 2. Enqueued, not cleared: the relay's 3rd pass dies between addBulk and clearing the outbox.
    await crashed(await start('relay-added:3'), 'relay-added');
    await settledAfterKill();
    const left = await outboxIds(redis, namespace, topic, ends.keys());
    const inQueue = (await Promise.all(left.map((id) => bull.getJob(id)))).filter((j) => j !== undefined && j !== null).length;
    expect(inQueue, `outbox entries already in BullMQ (of ${left.length} left)`).toBeGreaterThan(0);
    timings.crash2 = Date.now() - t0;

    // 3. Mid-batch: the 150th batch committed in Redis dies before its Kafka offset commit, so the
    //    group's committed offset is behind Redis. The next process must resume at the Redis fence
    //    (DESIGN §5), and were it to read from the group's offset, the fence refuses the batch.
    await crashed(await start('batch-committed:150'), 'batch-committed');
    const after3 = await settledAfterKill();
    let reread = 0;
    for (const [p, offset] of after3.fences) reread += Math.max(0, offset + 1 - (after3.committed.get(p) ?? 0));
    expect(reread, 'messages applied in Redis whose offsets the group has not committed').toBeGreaterThan(0);
    expect(midRun(after3.fences), describeFences(after3.fences, ends)).toBe(true);
    timings.crash3 = Date.now() - t0;

    // 4-6. Killed at moments picked by progress, whatever is in flight.
    let previous = after3.fences;
    for (const share of [0.45, 0.65, 0.85]) {
      const child = await start();
      const before = appliedMessages(previous);
      await waitForFences(redis, namespace, topic, ends, (f) => appliedMessages(f) >= Math.max(log.length * share, before + 2_000), `run to apply ${share * 100}%`, 150_000);
      await child.kill();
      expect(await child.exited).toMatchObject({ signal: 'SIGKILL' });
      kills++;
      const after = await settledAfterKill();
      for (const [p, offset] of previous) expect(after.fences.get(p), `fence of p${p} moved back`).toBeGreaterThanOrEqual(offset);
      expect(midRun(after.fences), describeFences(after.fences, ends)).toBe(true);
      previous = after.fences;
      timings[`kill${share * 100}`] = Date.now() - t0;
    }

    // 7. The last process finishes the log, relays what is left and delivers.
    const last = await start();
    await finishRun({ redis, namespace, topic, ends, expected, requests: receiver.requests, queue: bull, onApplied: () => (timings.applied = Date.now() - t0) });
    timings.delivered = Date.now() - t0;
    await last.stop();
    expect(await last.exited).toMatchObject({ code: 0 });
    expect(kills).toBe(6);

    // State: every count, every user, recorded stages, each user's applied ids in order.
    await expectStateEqualsModel(queries, ref, NOW);
    await expectDeviceSetsEqualModel(redis, namespace, topic, ref);

    // Touches: each expected one delivered, signed, with the reference's data; nothing else.
    const report = checkDeliveries(receiver.requests, expected, secret);
    console.info(`engine-crash: ${report.distinct} touches delivered of ${expected.length} expected, ${report.repeats} repeated deliveries (same webhook-id) after ${kills} kills`);
    expect(report.problems.slice(0, 20).join('\n'), `${report.problems.length} problems`).toBe('');
    expect(report.distinct).toBe(expected.length);
    // A repeat needs a send in flight at a kill: at most the channel's concurrency per kill.
    expect(report.repeats).toBeLessThanOrEqual(kills * CONCURRENCY);
    // One BullMQ job per expected touch with its data; no job the reference does not know. A job
    // whose run a kill cut off after the send was recorded ends `duplicate` when re-run: the
    // send ledger refused a second call.
    const jobs = await checkJobs(bull, expected, ['sent', 'duplicate']);
    console.info(`engine-crash: job outcomes ${JSON.stringify(jobs.outcomes)}`);
    expect(jobs.problems.slice(0, 20)).toEqual([]);
    timings.total = Date.now() - t0;
  }, 600_000);
});
