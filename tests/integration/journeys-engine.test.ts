import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { createTopic, deleteTopics, uniqueName } from '../support/kafka-admin.js';
import { dropNamespace, highWatermarks, produceLog, testConfig, waitForLanes } from '../support/engine-harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';
import { webhookSecret } from '../support/touch-harness.js';

/**
 * Journeys end to end: events through the real broker into the engine, decisions committed
 * with the state, the outbox relayed to BullMQ, the workers delivering over a signed webhook
 * to a real HTTP server on loopback. Checked touch by touch against what the rules mean: the
 * welcome for each registration, the reminder only for the transfer left unfinished (fired by
 * the timer sweep with no event arriving), nothing twice — not even after a full replay.
 */
const secret = webhookSecret();
let receiver: WebhookReceiver;
let redis: Redis;
const topic = uniqueName('journeys');
const namespace = `j${randomBytes(4).toString('hex')}`;
const queue = `touches-${randomBytes(3).toString('hex')}`;

function yaml(groupId: string, url: string): string {
  return `
kafka: { brokers: [${inject('kafkaBrokers')}], topic: ${topic}, dlqTopic: ${topic}.dlq, groupId: ${groupId} }
redis: { url: ${inject('redisUrl')}, keyPrefix: ${namespace} }
http: { port: 0 }
time: { reportingTimeZone: UTC, maxTriggerAge: 1h }
lifecycle: { sweepInterval: 50ms }
touches:
  queue: ${queue}
  channels:
    hook: { adapter: webhook, url: "${url}", secret: "${secret}", allowPrivateAddresses: true, timeout: 2s }
journeys:
  - id: welcome
    priority: 10
    trigger: { type: event, match: { name: register } }
    reEntry: never
    channel: hook
    template: welcome
    useGlobalHoldout: false
  - id: transfer-abandoned
    priority: 50
    trigger: { type: notFollowedBy, first: { name: transfer_started }, then: { name: transfer_done }, within: 2s, by: flow_id }
    reEntry: { cooldown: 1h }
    channel: hook
    template: transfer_reminder
    useGlobalHoldout: false
`;
}

let n = 0;
function ev(userId: string, name: string, props: Record<string, string> = {}): AppEvent {
  return { eventId: `${namespace}-${n++}`, userId, name, timeMs: Date.now(), channel: 'app', props, value: 0, tz: 'UTC', deviceId: '', sentMs: 0 };
}

async function produce(events: AppEvent[]): Promise<void> {
  await produceLog(inject('kafkaBrokers'), topic, events.map((e) => ({ partition: 0, key: e.userId, value: Buffer.from(encodeEvent(e)), ref: { partition: 0, event: null } })));
}

function startEngine(groupId: string): Engine {
  const { config } = testConfig(yaml(groupId, `${receiver.url}/hooks`));
  return new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry() });
}

describe('journeys through the engine to a webhook', () => {
  let engine: Engine;

  beforeAll(async () => {
    receiver = await startWebhookReceiver(secret);
    redis = new Redis(inject('redisUrl'));
    await createTopic(inject('kafkaBrokers'), topic, 1);
    await createTopic(inject('kafkaBrokers'), `${topic}.dlq`, 1);
    engine = startEngine(uniqueName('jgroup'));
    await engine.start();
  }, 60_000);

  afterAll(async () => {
    await engine?.stop();
    await receiver?.close();
    await dropNamespace(redis, namespace);
    for (const pattern of [`bull:${queue}:*`, `${namespace}:touches:*`, `{${namespace}:touches:*`]) {
      const keys = await redis.keys(pattern);
      if (keys.length) await redis.unlink(...keys);
    }
    await redis.quit();
    await deleteTopics(inject('kafkaBrokers'), [topic, `${topic}.dlq`]);
  });

  it('delivers a welcome per registration and a reminder only for the unfinished transfer, signed, once each', async () => {
    await produce([
      ev('alice', 'register'),
      ev('bob', 'register'),
      ev('bob', 'transfer_started', { flow_id: 'f1' }),
      ev('carol', 'transfer_started', { flow_id: 'f2' }),
      ev('carol', 'transfer_done', { flow_id: 'f2' }),
    ]);
    // Two welcomes at once; bob's reminder two seconds later, from the timer sweep alone.
    const got = await receiver.waitFor(3, 30_000);
    const touches = got.map((r) => JSON.parse(r.body) as { data?: Record<string, unknown> } & Record<string, unknown>);
    const view = touches.map((t) => {
      const d = (t.data ?? t) as Record<string, unknown>;
      return `${String(d.userId)}:${String(d.journeyId)}:${String(d.template)}`;
    });
    expect(view.sort()).toEqual(['alice:welcome:welcome', 'bob:transfer-abandoned:transfer_reminder', 'bob:welcome:welcome']);
    for (const r of got) expect(r.verified).toMatchObject({ ok: true });
    expect(new Set(got.map((r) => r.id)).size).toBe(3);

    // Carol's transfer was finished in time: her wait was cancelled, counted, and nothing sent.
    const stats = await (await fetch(`${engine.opsUrl}/v1/journeys/transfer-abandoned/stats`)).json() as { decisions: Record<string, number>; cancelled: Record<string, number> };
    expect(stats.decisions).toEqual({ send: 1 });
    expect(stats.cancelled).toEqual({ followed_by: 1 });
    const welcome = await (await fetch(`${engine.opsUrl}/v1/journeys/welcome/stats`)).json() as { decisions: Record<string, number>; variants: Record<string, { users: number }> };
    expect(welcome.decisions).toEqual({ send: 2 });
    expect(welcome.variants.default?.users).toBe(2);
  }, 60_000);

  it('sends nothing again when a second group replays the whole topic', async () => {
    const before = receiver.requests.length;
    await engine.stop();
    engine = startEngine(uniqueName('jreplay'));
    await engine.start();
    await waitForLanes(redis, namespace, topic, await highWatermarks(inject('kafkaBrokers'), topic), 30_000);
    // The replayed group reads all five events; the fence refuses them, so no decision is made.
    const deadline = Date.now() + 30_000;
    while ((await engine.metrics.eventsConsumed.get()).values[0]!.value < 5) {
      if (Date.now() > deadline) throw new Error('the replay did not read the topic');
      await new Promise((r) => setTimeout(r, 50));
    }
    await engine.idle();
    expect((await engine.metrics.eventsApplied.get()).values[0]?.value ?? 0).toBe(0);
    expect(await redis.hlen(`{${namespace}:${topic}:0}:outbox`)).toBe(0);
    expect(receiver.requests.length).toBe(before);
  }, 60_000);
});
