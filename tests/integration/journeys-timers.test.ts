import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import type { JourneyStats } from '../../src/state/journey-stats.js';
import { createTopic, deleteTopics, uniqueName } from '../support/kafka-admin.js';
import { dropNamespace, highWatermarks, produceLog, testConfig, waitForLanes } from '../support/engine-harness.js';

/**
 * Journey timers on the engine's injected clock (issue 4, "Time"): an absence deadline and an
 * inactivity threshold fire at the first sweep at or after their due time, with no event
 * arriving, and not one sweep earlier; an awaited event that arrives after its reminder was
 * decided is counted as a late follow-up, not ignored. The workers are off: the proof is the
 * decision, committed with the state, and its job in BullMQ.
 */
const MIN = 60_000;
const DAY = 86_400_000;
const SWEEP = 50;
const topic = uniqueName('jtimers');
const namespace = `jt${randomBytes(4).toString('hex')}`;
const queueName = `touches-${randomBytes(3).toString('hex')}`;
let redis: Redis;
let engine: Engine;
let queue: Queue;
// Starts at the real time so BullMQ's delays (real clock) stay sane; moved by hand after.
let now = Date.now();

const yaml = `
kafka: { brokers: [${inject('kafkaBrokers')}], topic: ${topic}, dlqTopic: ${topic}.dlq, groupId: ${uniqueName('jt')} }
redis: { url: ${inject('redisUrl')}, keyPrefix: ${namespace} }
http: { port: 0 }
time: { reportingTimeZone: UTC, maxTriggerAge: 1h }
lifecycle: { sweepInterval: ${SWEEP}ms }
touches: { queue: ${queueName} }
journeys:
  - id: transfer-abandoned
    priority: 50
    trigger: { type: notFollowedBy, first: { name: transfer_started }, then: { name: transfer_done }, within: 30m, by: flow_id }
    channel: push
    template: transfer_reminder
    useGlobalHoldout: false
  - id: win-back
    priority: 30
    trigger: { type: inactive, for: 14d }
    channel: sms
    template: winback_sms
    useGlobalHoldout: false
`;

let seq = 0;
const ev = (userId: string, name: string, t: number, props: Record<string, string> = {}): AppEvent => ({
  eventId: `${namespace}-${seq++}`, userId, name, timeMs: t, channel: 'app', props, value: 0, tz: 'UTC', deviceId: '', sentMs: 0,
});

async function apply(events: AppEvent[]): Promise<void> {
  await produceLog(inject('kafkaBrokers'), topic, events.map((e) => ({ partition: 0, key: e.userId, value: Buffer.from(encodeEvent(e)), ref: { partition: 0, event: null } })));
  await waitForLanes(redis, namespace, topic, await highWatermarks(inject('kafkaBrokers'), topic), 30_000);
  await engine.idle();
}

async function sweepAt(t: number): Promise<void> {
  now = t;
  await engine.sweepNow();
  await engine.idle();
}

async function stats(journey: string): Promise<JourneyStats> {
  return (await (await fetch(`${engine.opsUrl}/v1/journeys/${journey}/stats`)).json()) as JourneyStats;
}

describe('journey timers through the engine, on virtual time', () => {
  const T = now;

  beforeAll(async () => {
    redis = new Redis(inject('redisUrl'));
    queue = new Queue(queueName, { connection: redis.duplicate({ maxRetriesPerRequest: null }) });
    await createTopic(inject('kafkaBrokers'), topic, 1);
    await createTopic(inject('kafkaBrokers'), `${topic}.dlq`, 1);
    const { config } = testConfig(yaml);
    // sweepIntervalMs huge: only sweepNow() sweeps, so the test decides when time passes.
    engine = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry(), clock: () => now, sweepIntervalMs: 3_600_000, workers: false });
    await engine.start();
  }, 60_000);

  afterAll(async () => {
    await engine?.stop();
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await queue?.close();
    await dropNamespace(redis, namespace);
    await redis.quit();
    await deleteTopics(inject('kafkaBrokers'), [topic, `${topic}.dlq`]);
  });

  it('fires the absence deadline at the first sweep at or after it, not before, with no event', async () => {
    await apply([ev('ann', 'transfer_started', T, { flow_id: 'f1' })]);
    await sweepAt(T + 30 * MIN - 1);
    expect((await stats('transfer-abandoned')).decisions).toEqual({});
    await sweepAt(T + 30 * MIN + SWEEP);
    const s = await stats('transfer-abandoned');
    expect(s.decisions).toEqual({ send: 1 });
    // Relayed to BullMQ with the touch id as job id, to be sent when the timer fired: at most
    // one sweep interval after the deadline.
    const deadline = Date.now() + 10_000;
    let jobs = await queue.getJobs(['waiting', 'delayed']);
    while (jobs.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      jobs = await queue.getJobs(['waiting', 'delayed']);
    }
    expect(jobs.map((j) => [j.name, j.data.userId, j.data.journeyId, j.data.sendAt])).toEqual([['push', 'ann', 'transfer-abandoned', T + 30 * MIN + SWEEP]]);
    expect(jobs[0]!.id).toBe(jobs[0]!.data.touchId);
  });

  it('counts the awaited event that arrives after the reminder was decided as a late follow-up', async () => {
    await apply([ev('ann', 'transfer_done', T + 31 * MIN, { flow_id: 'f1' })]);
    const s = await stats('transfer-abandoned');
    expect(s.lateFollowUps).toBe(1);
    expect(s.decisions).toEqual({ send: 1 });
  });

  it('fires inactivity after 14 days at the first sweep past the threshold', async () => {
    const last = T + 31 * MIN; // ann's last event
    await sweepAt(last + 14 * DAY - 1);
    expect((await stats('win-back')).decisions).toEqual({});
    await sweepAt(last + 14 * DAY + SWEEP);
    expect((await stats('win-back')).decisions).toEqual({ send: 1 });
    // The lifecycle timer rode the same sweep: ann is dormant now.
    expect((await engine.queries.user('ann', now))?.stage).toBe('dormant');
  });
});
