import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { createTopic, deleteTopics, uniqueName } from '../support/kafka-admin.js';
import { dropNamespace, produceLog, testConfig } from '../support/engine-harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';
import { webhookSecret } from '../support/touch-harness.js';

/**
 * The send-time re-check through the real engine and workers.
 *
 * Regression: a delayed touch cancelled by an exit was still delivered when the user re-entered
 * the journey before its sendAt (the send-time re-check compared the touch with the user's
 * current entry, which the re-entry had replaced). Real broker, engine, Redis, BullMQ workers
 * and a signed webhook to a recording server on loopback: the cancelled touch's job runs at its
 * sendAt and must be refused (cancelled_before_send); the re-entry's touch and a control user's
 * touch arrive, once each.
 *
 * Budgets: the journey stats' `cost` is what the budget ledger charged at send time, not what
 * was decided: with a budget for two touches and three users qualifying at once, every lane
 * may decide a touch, but only two are charged and delivered; once the engine has re-read the
 * spent budget, the decision step itself suppresses further claims (budget_total).
 */
const secret = webhookSecret();
const topic = uniqueName('jcancel');
const namespace = `jc${randomBytes(4).toString('hex')}`;
const queueName = `touches-${randomBytes(3).toString('hex')}`;
// Long enough that the exit is applied before the first sendAt even on a loaded machine.
const DELAY_MS = 8_000;
let receiver: WebhookReceiver;
let redis: Redis;
let queue: Queue;
let engine: Engine;

function yaml(url: string): string {
  return `
kafka: { brokers: [${inject('kafkaBrokers')}], topic: ${topic}, dlqTopic: ${topic}.dlq, groupId: ${uniqueName('jcgroup')} }
redis: { url: ${inject('redisUrl')}, keyPrefix: ${namespace} }
http: { port: 0 }
time: { reportingTimeZone: UTC, maxTriggerAge: 1h }
lifecycle: { sweepInterval: 50ms }
touches:
  queue: ${queueName}
  channels:
    hook: { adapter: webhook, url: "${url}", secret: "${secret}", allowPrivateAddresses: true, timeout: 2s }
journeys:
  - id: offer
    priority: 10
    trigger: { type: event, match: { name: viewed } }
    exitOn: [{ name: applied }]
    reEntry: { cooldown: 1s }
    channel: hook
    template: offer
    steps:
      - { id: push, delay: ${DELAY_MS}ms }
    useGlobalHoldout: false
  - id: reward
    priority: 5
    trigger: { type: event, match: { name: claimed } }
    channel: hook
    template: reward
    budget: { total: 2, costPerTouch: 1 }
    useGlobalHoldout: false
`;
}

let n = 0;
function ev(userId: string, name: string, timeMs: number): AppEvent {
  return { eventId: `${namespace}-${n++}`, userId, name, timeMs, channel: 'app', props: {}, value: 0, tz: 'UTC', deviceId: '', sentMs: 0 };
}

describe('send-time re-check through the engine to a webhook', () => {
  beforeAll(async () => {
    receiver = await startWebhookReceiver(secret);
    redis = new Redis(inject('redisUrl'));
    queue = new Queue(queueName, { connection: new Redis(inject('redisUrl'), { maxRetriesPerRequest: null }) });
    await createTopic(inject('kafkaBrokers'), topic, 1);
    await createTopic(inject('kafkaBrokers'), `${topic}.dlq`, 1);
    const { config } = testConfig(yaml(`${receiver.url}/hooks`));
    engine = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry() });
    await engine.start();
  }, 60_000);

  afterAll(async () => {
    await engine?.stop();
    await receiver?.close();
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await queue?.close();
    await dropNamespace(redis, namespace);
    for (const pattern of [`${namespace}:touches:*`, `{${namespace}:touches:*`]) {
      const keys = await redis.keys(pattern);
      if (keys.length) await redis.unlink(...keys);
    }
    await redis.quit();
    await deleteTopics(inject('kafkaBrokers'), [topic, `${topic}.dlq`]);
  });

  it('never delivers the cancelled touch; delivers the re-entry and the control once each', async () => {
    const now = Date.now();
    // Event times are set, not slept for: the re-entry is 1.5 s after the first entry (past the
    // 1 s cool-down) and all three are before the first touch's sendAt (first view + 8 s).
    const first = ev('dana', 'viewed', now - 1_500);
    const exit = ev('dana', 'applied', now - 1_000);
    const again = ev('dana', 'viewed', now);
    const control = ev('eli', 'viewed', now);
    const events = [first, exit, again, control];
    await produceLog(inject('kafkaBrokers'), topic, events.map((e) => ({ partition: 0, key: e.userId, value: Buffer.from(encodeEvent(e)), ref: { partition: 0, event: null } })));

    // Three jobs: the cancelled one (its delayed job stays in BullMQ), the re-entry's, the control's.
    const byTrigger = async () => new Map((await queue.getJobs(['completed', 'failed', 'delayed', 'waiting', 'active'])).map((j) => [String((j.data as { triggerEventId: string }).triggerEventId), j]));
    const deadline = Date.now() + 30_000;
    for (;;) {
      const jobs = await byTrigger();
      const done = [first, again, control].every((e) => jobs.get(e.eventId)?.finishedOn !== undefined);
      if (done && receiver.requests.length >= 2) break;
      if (Date.now() > deadline) throw new Error(`jobs not finished within 30 s: ${[...jobs.values()].map((j) => `${String((j.data as { triggerEventId: string }).triggerEventId)}:${j.finishedOn ?? 'open'}`).join(', ')}; deliveries ${receiver.requests.length}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const jobs = await byTrigger();
    const cancelled = jobs.get(first.eventId)!;
    // The worker ran the cancelled job at its sendAt and refused it with the reason code.
    expect(cancelled.returnvalue).toEqual({ outcome: 'suppressed', reason: 'cancelled_before_send' });
    expect((cancelled.data as { sendAt: number }).sendAt).toBe(first.timeMs + DELAY_MS);

    const delivered = receiver.requests.map((r) => r.id).sort();
    expect(delivered).toEqual([jobs.get(again.eventId)!.id!, jobs.get(control.eventId)!.id!].sort());
    expect(delivered).not.toContain(cancelled.id);
    for (const r of receiver.requests) expect(r.verified).toMatchObject({ ok: true });
    expect(jobs.get(again.eventId)!.returnvalue).toEqual({ outcome: 'sent' });

    const stats = (await (await fetch(`${engine.opsUrl}/v1/journeys/offer/stats`)).json()) as { decisions: Record<string, number>; cancelled: Record<string, number> };
    expect(stats.decisions).toEqual({ send: 3 });
    expect(stats.cancelled).toEqual({ exit: 1 });
  }, 60_000);

  it('counts as cost what the budget ledger charged at send, and never sends past the budget', async () => {
    const claims = ['fay', 'gus', 'hal'].map((u) => ev(u, 'claimed', Date.now()));
    await produceLog(inject('kafkaBrokers'), topic, claims.map((e) => ({ partition: 0, key: e.userId, value: Buffer.from(encodeEvent(e)), ref: { partition: 0, event: null } })));
    const ids = new Set(claims.map((e) => e.eventId));
    const finished = async () => (await queue.getJobs(['completed', 'failed'])).filter((j) => ids.has(String((j.data as { triggerEventId: string }).triggerEventId)));
    const stats = async () => (await (await fetch(`${engine.opsUrl}/v1/journeys/reward/stats`)).json()) as { decisions: Record<string, number>; reasons: Record<string, number>; cost: number; costDecided: number };
    const deadline = Date.now() + 30_000;
    // Every claim's decision is counted and every decided job has run. One stats read per pass:
    // two reads could straddle the decisions' commit (send 0 in the first, 3 reasons in the second)
    // and end the wait before any job ran.
    for (;;) {
      const done = (await finished()).length;
      const s = await stats();
      if (done >= (s.decisions.send ?? 0) && Object.values(s.reasons).reduce((a, b) => a + b, 0) >= 3) break;
      if (Date.now() > deadline) throw new Error(`reward jobs not finished within 30 s: ${JSON.stringify(await stats())}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const jobs = await finished();
    const sent = jobs.filter((j) => (j.returnvalue as { outcome: string }).outcome === 'sent');
    const refused = jobs.filter((j) => (j.returnvalue as { outcome: string }).outcome !== 'sent');
    expect(sent).toHaveLength(2);
    for (const j of refused) expect(j.returnvalue).toEqual({ outcome: 'suppressed', reason: 'budget_exhausted' });
    const delivered = receiver.requests.filter((r) => (JSON.parse(r.body) as { data?: { journeyId?: string } }).data?.journeyId === 'reward').map((r) => r.id);
    expect(delivered.sort()).toEqual(sent.map((j) => j.id!).sort());

    const s = await stats();
    expect(s.cost).toBe(2);
    // Decided: one per touch the decision step let through (send or defer), each costing 1.
    expect(s.costDecided).toBe(jobs.length);
    expect(s.costDecided).toBeGreaterThanOrEqual(s.cost);
  }, 60_000);

  it('the decision step sees the spent budget: a later claim is suppressed at decision time (budget_total), no job', async () => {
    type Stats = { reasons: Record<string, number> };
    const stats = async () => (await (await fetch(`${engine.opsUrl}/v1/journeys/reward/stats`)).json()) as Stats;
    const decided = (s: Stats) => Object.values(s.reasons).reduce((a, b) => a + b, 0);
    // The engine re-reads the ledger every second: claim one at a time until a decision says so.
    const deadline = Date.now() + 20_000;
    let claim: AppEvent | null = null;
    for (let i = 0; (await stats()).reasons.budget_total === undefined; i++) {
      if (Date.now() > deadline) throw new Error(`no claim was suppressed at decision time within 20 s: ${JSON.stringify(await stats())}`);
      const before = decided(await stats());
      claim = ev(`late-${i}`, 'claimed', Date.now());
      await produceLog(inject('kafkaBrokers'), topic, [{ partition: 0, key: claim.userId, value: Buffer.from(encodeEvent(claim)), ref: { partition: 0, event: null } }]);
      while (decided(await stats()) === before) {
        if (Date.now() > deadline) throw new Error('a claim was not decided within 20 s');
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    expect((await stats()).reasons.budget_total).toBe(1);
    const jobs = await queue.getJobs(['completed', 'failed', 'delayed', 'waiting', 'active']);
    expect(jobs.filter((j) => (j.data as { triggerEventId: string }).triggerEventId === claim!.eventId)).toEqual([]);
    // Still never overspent.
    const cost = ((await (await fetch(`${engine.opsUrl}/v1/journeys/reward/stats`)).json()) as { cost: number }).cost;
    expect(cost).toBe(2);
  }, 60_000);
});
