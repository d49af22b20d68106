import { afterEach, describe, expect, inject, it } from 'vitest';
import { Registry } from 'prom-client';
import type { ChannelAdapter, SendResult } from '../../src/touches/channel-adapter.js';
import { DisabledEndpoints } from '../../src/touches/channels/disabled-endpoints.js';
import { LogAdapter } from '../../src/touches/channels/log-adapter.js';
import { WebhookAdapter, type WebhookAdapterOptions } from '../../src/touches/channels/webhook-adapter.js';
import { listFailedTouches } from '../../src/touches/failed-touches.js';
import { outboxKey } from '../../src/touches/keys.js';
import { encodeOutboxEntry } from '../../src/touches/outbox-entry.js';
import { OutboxRelay } from '../../src/touches/outbox-relay.js';
import { watchTouchQueue } from '../../src/touches/queue-gauges.js';
import { SendLedger } from '../../src/touches/send-ledger.js';
import type { TouchJob } from '../../src/touches/touch-job.js';
import { TouchMetrics } from '../../src/touches/touch-metrics.js';
import { TouchWorker, type TouchWorkerOptions } from '../../src/touches/touch-worker.js';
import { capturedLogger, makeTouch, touchHarness, waitForJob, webhookSecret, type TouchHarness } from '../support/touch-harness.js';
import { startWebhookReceiver, type ReplyScript, type WebhookReceiver } from '../support/webhook-receiver.js';

let h: TouchHarness;
afterEach(async () => {
  await h?.cleanup();
});

interface Rig {
  receiver: WebhookReceiver;
  secret: string;
  disabled: DisabledEndpoints;
  webhook(over?: Partial<WebhookAdapterOptions>): WebhookAdapter;
  worker(adapters: ChannelAdapter[], over?: Partial<TouchWorkerOptions>): TouchWorker;
}

async function rig(script?: ReplyScript): Promise<Rig> {
  h = touchHarness(inject('redisUrl'));
  const secret = webhookSecret();
  const receiver = await startWebhookReceiver(secret, script);
  h.defer(() => receiver.close());
  const disabled = new DisabledEndpoints(h.redis, h.namespace);
  return {
    receiver,
    secret,
    disabled,
    webhook: (over = {}) => new WebhookAdapter({ url: receiver.url, secret, allowPrivateAddresses: true, disabled, timeoutMs: 2_000, ...over }),
    worker(adapters, over = {}) {
      const w = new TouchWorker({
        connection: h.redis,
        queueName: h.queueName,
        prefix: h.prefix,
        namespace: h.namespace,
        adapters,
        backoff: { initialMs: 50, jitter: 0 },
        ...over,
      });
      // Registered after the receiver: closed first.
      h.defer(() => w.close(true));
      return w;
    },
  };
}

describe('touch delivery: worker, ledger and webhook channel against real Redis and a real HTTP receiver', () => {
  it('POSTs one signed request per touch; the receiver verifies it; the body carries the template and listed attributes only', async () => {
    const r = await rig();
    r.worker([r.webhook()]);
    const t = makeTouch({ attributes: { product: 'loan', rate: 3.5 } });
    await h.enqueue([t]);
    expect(await waitForJob(h.queue, t.touchId, ['completed'])).toBe('completed');
    const [req] = await r.receiver.waitFor(1);
    expect(req?.verified).toMatchObject({ ok: true, id: t.touchId });
    expect(req?.headers['content-type']).toBe('application/json');
    expect(Number(req?.headers['webhook-timestamp'])).toBeCloseTo(Date.now() / 1000, -2);
    const body = JSON.parse(req?.body ?? '{}');
    expect(body).toEqual({
      type: 'nudge.touch',
      timestamp: new Date(t.triggeredAt).toISOString(),
      data: { touchId: t.touchId, userId: t.userId, journeyId: t.journeyId, stepId: t.stepId, channel: 'webhook', template: 'loan_offer', variant: 'A', sendAt: t.sendAt, attributes: { product: 'loan', rate: 3.5 } },
    });
    expect((await h.queue.getJob(t.touchId))?.returnvalue).toEqual({ outcome: 'sent' });
  });

  it('delivers exactly once when the relay crashes between addBulk and clear (relay step run twice) and after a replayed commit', async () => {
    const r = await rig();
    const outboxes = [outboxKey(h.laneTag(0)), outboxKey(h.laneTag(1))];
    const touches = Array.from({ length: 12 }, () => makeTouch());
    for (const [i, t] of touches.entries()) {
      const e = encodeOutboxEntry(t);
      await h.redis.hset(outboxes[i % 2] as string, e.field, e.value);
    }
    let crash = true;
    const relay = new OutboxRelay({
      redis: h.redis,
      queue: h.queue,
      outboxKeys: outboxes,
      jobPolicy: { attempts: 3 },
      onAdded: () => {
        if (crash) {
          crash = false;
          throw new Error('crash after addBulk');
        }
      },
    });
    await expect(relay.drainOnce()).rejects.toThrow(/crash/);
    await relay.drainOnce();
    r.worker([r.webhook()]);
    for (const t of touches) await waitForJob(h.queue, t.touchId, ['completed']);
    // The commit replays (same touch ids) after everything was delivered.
    for (const t of touches.slice(0, 4)) {
      const e = encodeOutboxEntry(t);
      await h.redis.hset(outboxes[0] as string, e.field, e.value);
    }
    await relay.drainOnce();
    await new Promise((res) => setTimeout(res, 300));
    const ids = r.receiver.requests.map((q) => q.id).sort();
    expect(ids).toEqual(touches.map((t) => t.touchId).sort());
    expect(r.receiver.requests.every((q) => q.verified.ok)).toBe(true);
  });

  it('a job that runs again after its provider call does not call the provider again (send ledger)', async () => {
    const r = await rig();
    const w = r.worker([r.webhook()], { autorun: false });
    const t = makeTouch();
    await h.enqueue([t]);
    const job = await h.queue.getJob(t.touchId);
    // A run that sends and then dies before BullMQ records completion...
    expect(await w.processor.process(job!)).toEqual({ outcome: 'sent' });
    expect(r.receiver.requests).toHaveLength(1);
    // ...so the job is still there and runs again: the ledger stops the second call.
    void w.run();
    await waitForJob(h.queue, t.touchId, ['completed']);
    expect((await h.queue.getJob(t.touchId))?.returnvalue).toEqual({ outcome: 'duplicate' });
    expect(await w.processor.process(job!)).toEqual({ outcome: 'duplicate' });
    expect(r.receiver.requests).toHaveLength(1);
  });

  it('after a crash mid-send (lease ran out) the webhook is sent again with the same webhook-id; a channel that cannot dedupe records ambiguous', async () => {
    const r = await rig();
    let calls = 0;
    const sms: ChannelAdapter = {
      channel: 'sms',
      idempotent: false,
      maxSendMs: 1_000,
      send: async (): Promise<SendResult> => {
        calls++;
        return { kind: 'ok' };
      },
    };
    const [hook, text] = [makeTouch(), makeTouch({ channel: 'sms' })];
    // Attempts that took the lease and died: their 1 ms leases have run out.
    const ledger = new SendLedger(h.redis, h.namespace, 60_000);
    for (const t of [hook, text]) expect((await ledger.begin(t.touchId, 1)).kind).toBe('acquired');
    await new Promise((res) => setTimeout(res, 20));
    r.worker([r.webhook(), sms]);
    await h.enqueue([hook, text]);
    await waitForJob(h.queue, hook.touchId, ['completed']);
    await waitForJob(h.queue, text.touchId, ['completed']);
    expect((await h.queue.getJob(hook.touchId))?.returnvalue).toEqual({ outcome: 'sent' });
    expect(r.receiver.requests.map((q) => q.id)).toEqual([hook.touchId]);
    expect((await h.queue.getJob(text.touchId))?.returnvalue).toMatchObject({ outcome: 'ambiguous' });
    expect(calls).toBe(0);
  });

  it('a live lease held by another attempt makes the job retry later instead of sending in parallel', async () => {
    const r = await rig();
    const t = makeTouch();
    const ledger = new SendLedger(h.redis, h.namespace, 60_000);
    const held = await ledger.begin(t.touchId, 60_000);
    if (held.kind !== 'acquired') throw new Error('expected the lease');
    r.worker([r.webhook()]);
    await h.enqueue([t], { attempts: 6 });
    // The job finds the lease taken and is retried later, without a request.
    const deadline = Date.now() + 10_000;
    while (!/^NUDGE_TOUCH_SEND_IN_PROGRESS/.test((await h.queue.getJob(t.touchId))?.failedReason ?? '')) {
      if (Date.now() > deadline) throw new Error('the job never met the held lease');
      await new Promise((res) => setTimeout(res, 10));
    }
    expect(r.receiver.requests).toHaveLength(0);
    // The other attempt ends without sending and gives the lease back: a retry sends, once.
    await ledger.release(t.touchId, held.lease);
    await waitForJob(h.queue, t.touchId, ['completed']);
    expect(r.receiver.requests).toHaveLength(1);
    expect((await h.queue.getJob(t.touchId))?.attemptsMade).toBeGreaterThanOrEqual(2);
  });

  it('410 Gone disables the endpoint: that touch fails, later touches fail fast without a request until re-enabled', async () => {
    const r = await rig((_req, n) => ({ status: n === 1 ? 410 : 200 }));
    r.worker([r.webhook()]);
    const [a, b, c] = [makeTouch(), makeTouch(), makeTouch()];
    await h.enqueue([a]);
    await waitForJob(h.queue, a.touchId, ['failed']);
    expect(await r.disabled.get('webhook')).toMatchObject({ endpoint: 'webhook', reason: 'answered 410 Gone' });
    await h.enqueue([b]);
    await waitForJob(h.queue, b.touchId, ['failed']);
    expect(r.receiver.requests).toHaveLength(1);
    const failed = await listFailedTouches(h.queue);
    expect(failed.map((f) => [f.touchId, f.errorCode, f.attempts]).sort()).toEqual(
      [[a.touchId, 'NUDGE_TOUCH_ENDPOINT_DISABLED', 1], [b.touchId, 'NUDGE_TOUCH_ENDPOINT_DISABLED', 1]].sort(),
    );
    expect(await r.disabled.enable('webhook')).toBe(true);
    await h.enqueue([c]);
    await waitForJob(h.queue, c.touchId, ['completed']);
    expect(r.receiver.requests).toHaveLength(2);
  });

  it('429 with Retry-After is retried no sooner than asked, with the same webhook-id', async () => {
    const r = await rig((_req, n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 }));
    r.worker([r.webhook()]);
    const t = makeTouch();
    await h.enqueue([t]);
    await waitForJob(h.queue, t.touchId, ['completed']);
    const [first, second] = r.receiver.requests;
    expect(r.receiver.requests).toHaveLength(2);
    expect(second!.id).toBe(first!.id);
    expect(second!.verified.ok).toBe(true);
    // The backoff alone would be 50 ms; Retry-After asked for 1 s.
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(900);
  });

  it('a 4xx is not retried and shows in the failed-touch view with its code, without personal data', async () => {
    const r = await rig(() => ({ status: 400 }));
    r.worker([r.webhook()]);
    const t = makeTouch({ userId: 'user-canary-55', attributes: { name: 'Canary Person' } });
    await h.enqueue([t], { attempts: 5 });
    await waitForJob(h.queue, t.touchId, ['failed']);
    await new Promise((res) => setTimeout(res, 200));
    expect(r.receiver.requests).toHaveLength(1);
    const failed = await listFailedTouches(h.queue);
    expect(failed).toEqual([{ touchId: t.touchId, channel: 'webhook', journeyId: t.journeyId, stepId: t.stepId, attempts: 1, errorCode: 'NUDGE_TOUCH_DELIVERY_REJECTED', failedAt: expect.any(Number) }]);
    expect(JSON.stringify(failed)).not.toMatch(/canary/i);
  });

  it('does not follow a redirect: the redirect target is never requested and the touch is rejected', async () => {
    const r = await rig((req) => (req.path === '/hooks' ? { status: 302, headers: { location: `http://127.0.0.1:${r.receiver.port}/elsewhere` } } : { status: 200 }));
    r.worker([r.webhook()]);
    const t = makeTouch();
    await h.enqueue([t]);
    await waitForJob(h.queue, t.touchId, ['failed']);
    await new Promise((res) => setTimeout(res, 200));
    expect(r.receiver.requests.map((q) => q.path)).toEqual(['/hooks']);
    expect((await h.queue.getJob(t.touchId))?.failedReason).toMatch(/^NUDGE_TOUCH_DELIVERY_REJECTED: .*302 \(a redirect, not followed\)/);
  });

  it('retries a request that timed out, with the same webhook-id', async () => {
    const r = await rig((_req, n) => (n === 1 ? { status: 200, delayMs: 1_500 } : { status: 200 }));
    r.worker([r.webhook({ timeoutMs: 300 })]);
    const t = makeTouch();
    await h.enqueue([t]);
    await waitForJob(h.queue, t.touchId, ['completed']);
    expect(r.receiver.requests.map((q) => q.id)).toEqual([t.touchId, t.touchId]);
    // BullMQ counts the successful attempt too.
    expect((await h.queue.getJob(t.touchId))?.attemptsMade).toBe(2);
    expect((await h.queue.getJob(t.touchId))?.failedReason).toMatch(/^NUDGE_TOUCH_DELIVERY_RETRY: endpoint webhook did not answer within 300 ms/);
  });

  it('refuses private targets (literal IP or a name resolving to loopback) when allowPrivateAddresses is off', async () => {
    const r = await rig();
    const port = r.receiver.port;
    r.worker([
      r.webhook({ allowPrivateAddresses: false, url: `http://127.0.0.1:${port}/hooks` }),
      r.webhook({ allowPrivateAddresses: false, channel: 'crm', url: `http://localhost:${port}/hooks` }),
    ]);
    const [a, b] = [makeTouch(), makeTouch({ channel: 'crm' })];
    await h.enqueue([a, b], { attempts: 3 });
    await waitForJob(h.queue, a.touchId, ['failed']);
    await waitForJob(h.queue, b.touchId, ['failed']);
    expect(r.receiver.requests).toHaveLength(0);
    const codes = (await listFailedTouches(h.queue)).map((f) => [f.channel, f.errorCode, f.attempts]).sort();
    expect(codes).toEqual([['crm', 'NUDGE_TOUCH_TARGET_BLOCKED', 1], ['webhook', 'NUDGE_TOUCH_TARGET_BLOCKED', 1]]);
  });

  it('respects a channel’s rate across the window while other channels flow freely', async () => {
    const r = await rig();
    const log = capturedLogger();
    r.worker([r.webhook(), new LogAdapter(log.logger)], { channels: { webhook: { concurrency: 4, rate: { max: 4, durationMs: 1_000 } } } });
    const hooks = Array.from({ length: 12 }, () => makeTouch());
    const logs = Array.from({ length: 5 }, () => makeTouch({ channel: 'log' }));
    await h.enqueue([...hooks, ...logs]);
    for (const t of logs) await waitForJob(h.queue, t.touchId, ['completed']);
    const logsDoneAt = Date.now();
    const arrivals = (await r.receiver.waitFor(12, 20_000)).map((q) => q.at).sort((x, y) => x - y);
    // Slots are 250 ms apart, so 4 per second; arrivals can only be later than their slot, and a
    // late one shortens the gap after it. Generous slack: unlimited, all 12 land within ~50 ms.
    for (let i = 0; i + 4 < arrivals.length; i++) expect(arrivals[i + 4]! - arrivals[i]!).toBeGreaterThanOrEqual(750);
    expect(arrivals[11]! - arrivals[0]!).toBeGreaterThanOrEqual(2_000);
    // The log channel was not held behind the rate-limited webhook channel.
    expect(logsDoneAt).toBeLessThan(arrivals[8]!);
    for (const t of hooks) await waitForJob(h.queue, t.touchId, ['completed']);
  });

  it('keeps a channel within its concurrency in this process', async () => {
    const r = await rig(() => ({ status: 200, delayMs: 200 }));
    r.worker([r.webhook()], { channels: { webhook: { concurrency: 2 } } });
    const touches = Array.from({ length: 6 }, () => makeTouch());
    await h.enqueue(touches);
    for (const t of touches) await waitForJob(h.queue, t.touchId, ['completed']);
    expect(Math.max(...r.receiver.requests.map((q) => q.inFlight))).toBe(2);
  });

  it('asks the send-time policy re-check before sending and skips the send when it says no', async () => {
    const r = await rig();
    const asked: string[] = [];
    r.worker([r.webhook()], {
      recheck: async (job: TouchJob) => {
        asked.push(job.touchId);
        return job.stepId === 'quiet' ? { send: false, reason: 'quiet-hours' } : { send: true, reason: 'ok' };
      },
    });
    const [go, stop] = [makeTouch(), makeTouch({ stepId: 'quiet' })];
    await h.enqueue([go, stop]);
    await waitForJob(h.queue, go.touchId, ['completed']);
    await waitForJob(h.queue, stop.touchId, ['completed']);
    expect((await h.queue.getJob(stop.touchId))?.returnvalue).toEqual({ outcome: 'suppressed', reason: 'quiet-hours' });
    expect(r.receiver.requests.map((q) => q.id)).toEqual([go.touchId]);
    expect(asked.sort()).toEqual([go.touchId, stop.touchId].sort());
  });

  it('writes no personal data to the logs (canary attributes), whatever the outcome', async () => {
    const script: ReplyScript = (req) => {
      const stepId = JSON.parse(req.body).data.stepId as string;
      return stepId === 'reject' ? { status: 404 } : stepId === 'gone' ? { status: 503, headers: { 'retry-after': '0' } } : { status: 200 };
    };
    const r = await rig(script);
    const log = capturedLogger();
    r.worker([r.webhook(), new LogAdapter(log.logger)], { logger: log.logger });
    const canary = { name: 'CANARY Zhang Wei', phone: '+86 138 0013 8000', account: '6222020200112233445' };
    const touches = [
      makeTouch({ attributes: canary }),
      makeTouch({ attributes: canary, stepId: 'reject' }),
      makeTouch({ attributes: canary, stepId: 'gone' }),
      makeTouch({ attributes: canary, channel: 'log' }),
      makeTouch({ attributes: canary, channel: 'nowhere' }),
    ];
    await h.enqueue(touches, { attempts: 2 });
    for (const t of touches) await waitForJob(h.queue, t.touchId, ['completed', 'failed']);
    const text = log.text();
    expect(text).toContain(touches[3]!.touchId); // the log channel did write
    expect(text).toContain('attributeNames');
    for (const secret of Object.values(canary)) expect(text).not.toContain(secret);
    expect(text).not.toContain(r.secret);
    // The receiver got what the template needs, by design.
    expect(r.receiver.requests[0]?.body).toContain('CANARY Zhang Wei');
  });

  it('counts deliveries by channel and result, samples job states, and observes event-to-delivery latency', async () => {
    const r = await rig((req) => ({ status: JSON.parse(req.body).data.stepId === 'bad' ? 400 : 200 }));
    const registry = new Registry();
    const metrics = new TouchMetrics(registry, ['webhook']);
    r.worker([r.webhook()], { metrics });
    const stop = watchTouchQueue(h.queue, metrics, 50);
    h.defer(stop);
    const touches = [makeTouch(), makeTouch(), makeTouch(), makeTouch({ stepId: 'bad' })];
    await h.enqueue(touches);
    for (const t of touches) await waitForJob(h.queue, t.touchId, ['completed', 'failed']);
    await new Promise((res) => setTimeout(res, 150));
    const text = await registry.metrics();
    expect(text).toContain('nudge_touch_deliveries_total{channel="webhook",result="sent"} 3');
    expect(text).toContain('nudge_touch_deliveries_total{channel="webhook",result="rejected"} 1');
    expect(text).toContain('nudge_touch_jobs{state="completed"} 3');
    expect(text).toContain('nudge_touch_jobs{state="failed"} 1');
    expect(text).toContain('nudge_touch_event_to_delivery_seconds_count{channel="webhook"} 3');
    expect(text).not.toMatch(/touchId|userId|u\d+/);
  });
});
