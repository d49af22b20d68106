import { afterEach, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { startRedisServer } from '../../src/dev/redis-server.js';
import { outboxKey, outboxRejectsKey } from '../../src/touches/keys.js';
import { encodeOutboxEntry } from '../../src/touches/outbox-entry.js';
import { OutboxRelay } from '../../src/touches/outbox-relay.js';
import { outboxDepth } from '../../src/touches/outbox-store.js';
import { TouchMetrics } from '../../src/touches/touch-metrics.js';
import { openTouchQueue } from '../../src/touches/touch-queue.js';
import { makeTouch, touchHarness, type TouchHarness } from '../support/touch-harness.js';
import { until } from '../support/poll.js';

let h: TouchHarness;
afterEach(async () => {
  await h?.cleanup();
});

/** What the state commit script does for each touch: HSET into the lane's outbox. */
async function commit(redis: Redis, outbox: string, jobs: ReturnType<typeof makeTouch>[]): Promise<void> {
  if (jobs.length === 0) return;
  const pairs = jobs.flatMap((j) => {
    const e = encodeOutboxEntry(j);
    return [e.field, e.value];
  });
  await redis.hset(outbox, ...pairs);
}

describe('outbox relay against a real Redis', () => {
  it('turns outbox entries into jobs (name = channel, id = touch id, data = the entry), delays future ones, clears the outbox', async () => {
    h = touchHarness(inject('redisUrl'));
    const [o0, o1] = [outboxKey(h.laneTag(0)), outboxKey(h.laneTag(1))];
    const now = Date.now();
    const due = [makeTouch(), makeTouch({ channel: 'push' })];
    const later = makeTouch({ sendAt: now + 3_600_000 });
    await commit(h.redis, o0, due);
    await commit(h.redis, o1, [later]);
    const registry = new Registry();
    const metrics = new TouchMetrics(registry, ['webhook', 'push']);
    const relay = new OutboxRelay({ redis: h.redis, queue: h.queue, outboxKeys: [o0, o1], metrics });
    expect(await relay.depth()).toBe(3);

    const pass = await relay.drainOnce();
    expect(pass).toMatchObject({ relayed: 3, rejected: 0, cleared: 3, more: false });
    expect(await outboxDepth(h.redis, [o0, o1])).toBe(0);
    for (const t of due) {
      const job = await h.queue.getJob(t.touchId);
      expect(job?.name).toBe(t.channel);
      expect(job?.data).toEqual(t);
      expect(await job?.getState()).toBe('waiting');
    }
    const delayed = await h.queue.getJob(later.touchId);
    expect(await delayed?.getState()).toBe('delayed');
    expect(delayed?.opts.removeOnComplete).toEqual({ age: 7 * 86_400 });
    expect(await h.queue.getJobCounts('waiting', 'delayed')).toEqual({ waiting: 2, delayed: 1 });
    const text = await registry.metrics();
    expect(text).toMatch(/nudge_touch_relayed_total 3/);
    expect(text).toMatch(/nudge_touch_outbox_depth 0/);
    expect(text).toMatch(/nudge_touch_trigger_to_enqueue_seconds_count 2/);
  });

  it('a crash between addBulk and the clear is harmless: the next pass re-adds as no-ops and clears', async () => {
    h = touchHarness(inject('redisUrl'));
    const outbox = outboxKey(h.laneTag(0));
    const touches = Array.from({ length: 20 }, () => makeTouch());
    await commit(h.redis, outbox, touches);
    let crash = true;
    const relay = new OutboxRelay({
      redis: h.redis,
      queue: h.queue,
      outboxKeys: () => [outbox],
      onAdded: () => {
        if (crash) {
          crash = false;
          throw new Error('crash after addBulk, before clear');
        }
      },
    });
    await expect(relay.drainOnce()).rejects.toThrow(/crash after addBulk/);
    expect(await relay.depth()).toBe(20);
    expect((await h.queue.getJobCounts('waiting')).waiting).toBe(20);

    const again = await relay.drainOnce();
    expect(again).toMatchObject({ relayed: 20, cleared: 20 });
    expect(await relay.depth()).toBe(0);
    expect((await h.queue.getJobCounts('waiting')).waiting).toBe(20);

    // A replayed commit writes the same touches again later: still no new job.
    await commit(h.redis, outbox, touches.slice(0, 5));
    await relay.drainOnce();
    expect((await h.queue.getJobCounts('waiting')).waiting).toBe(20);
  });

  it('clears only the entries it added: an entry rewritten or written during the pass stays', async () => {
    h = touchHarness(inject('redisUrl'));
    const outbox = outboxKey(h.laneTag(0));
    const [a, b] = [makeTouch(), makeTouch()];
    await commit(h.redis, outbox, [a, b]);
    const late = makeTouch();
    const rewritten = { ...b, attributes: { product: 'fund' } };
    let first = true;
    const relay = new OutboxRelay({
      redis: h.redis,
      queue: h.queue,
      outboxKeys: [outbox],
      onAdded: async () => {
        if (!first) return;
        first = false;
        await commit(h.redis, outbox, [rewritten, late]);
      },
    });
    await relay.drainOnce();
    expect((await h.redis.hkeys(outbox)).sort()).toEqual([b.touchId, late.touchId].sort());
    await relay.drainOnce();
    expect(await h.redis.hlen(outbox)).toBe(0);
    // The rewrite had the same touch id: its re-add was a no-op; the job keeps the first data.
    expect((await h.queue.getJob(b.touchId))?.data).toEqual(b);
    expect((await h.queue.getJobCounts('waiting')).waiting).toBe(3);
  });

  it('sets aside entries that break the contract in <outbox>:rejected and relays the rest', async () => {
    h = touchHarness(inject('redisUrl'));
    const outbox = outboxKey(h.laneTag(2));
    const good = makeTouch();
    await commit(h.redis, outbox, [good]);
    await h.redis.hset(outbox, 'garbage', '{not json', 'tmismatch', encodeOutboxEntry(makeTouch()).value);
    const registry = new Registry();
    const relay = new OutboxRelay({ redis: h.redis, queue: h.queue, outboxKeys: [outbox], metrics: new TouchMetrics(registry, ['webhook']) });
    expect(await relay.drainOnce()).toMatchObject({ relayed: 1, rejected: 2, cleared: 3 });
    expect(await h.redis.hlen(outbox)).toBe(0);
    expect((await h.redis.hkeys(outboxRejectsKey(outbox))).sort()).toEqual(['garbage', 'tmismatch']);
    expect(await h.queue.getJob(good.touchId)).toBeDefined();
    expect(await registry.metrics()).toMatch(/nudge_touch_outbox_rejected_total 2/);
  });

  it('a woken relay makes a committed touch a waiting job in milliseconds (poll-only for comparison)', async () => {
    h = touchHarness(inject('redisUrl'));
    const outbox = outboxKey(h.laneTag(0));
    const measure = async (wake: boolean, n: number, pollIntervalMs: number): Promise<number[]> => {
      const writtenAt = new Map<string, number>();
      const latencies: number[] = [];
      const relay = new OutboxRelay({
        redis: h.redis,
        queue: h.queue,
        outboxKeys: [outbox],
        pollIntervalMs,
        onAdded: (jobs) => {
          const now = performance.now();
          for (const j of jobs) latencies.push(now - (writtenAt.get(j.touchId) ?? now));
        },
      });
      relay.start();
      try {
        for (let i = 0; i < n; i++) {
          const t = makeTouch();
          writtenAt.set(t.touchId, performance.now());
          await commit(h.redis, outbox, [t]);
          if (wake) relay.wake();
          await new Promise((r) => setTimeout(r, 3 + (i % 5)));
        }
        const deadline = Date.now() + 5_000;
        while (latencies.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      } finally {
        await relay.stop();
      }
      expect(latencies).toHaveLength(n);
      return latencies.sort((x, y) => x - y);
    };
    const p = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
    const woken = await measure(true, 300, 1_000);
    const polled = await measure(false, 60, 250);
    process.stdout.write(
      `[touches] outbox -> BullMQ latency: wake() p50 ${p(woken, 0.5).toFixed(1)} ms, p99 ${p(woken, 0.99).toFixed(1)} ms; ` +
        `poll every 250 ms p50 ${p(polled, 0.5).toFixed(1)} ms, p99 ${p(polled, 0.99).toFixed(1)} ms\n`,
    );
    // Alone on this 2-core machine the woken p99 is ~5 ms against the 100 ms target; when the whole
    // suite (broker, reference test) shares the cores it reached ~130 ms, so the bound here is
    // generous and the figure printed above is what to read. The benchmark owns the 100 ms claim.
    expect(p(woken, 0.5)).toBeLessThan(50);
    expect(p(woken, 0.99)).toBeLessThan(300);
    // Without a wake the poll interval is the latency: the reason the engine wakes the relay.
    expect(p(polled, 0.5)).toBeGreaterThan(p(woken, 0.5));
  });

  it('keeps running while Redis is down (backoff, errors counted) and relays again once it is back', async () => {
    h = touchHarness(inject('redisUrl'));
    const server = await startRedisServer();
    const client = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    client.on('error', () => {}); // expected while the server is down; the relay reports it
    const queue = openTouchQueue({ connection: client, prefix: h.prefix });
    queue.on('error', () => {});
    const outbox = outboxKey(h.laneTag(0));
    const registry = new Registry();
    const relay = new OutboxRelay({ redis: client, queue, outboxKeys: [outbox], pollIntervalMs: 50, initialBackoffMs: 20, maxBackoffMs: 200, metrics: new TouchMetrics(registry, ['webhook']) });
    let restarted: Awaited<ReturnType<typeof startRedisServer>> | undefined;
    try {
      relay.start();
      const first = makeTouch();
      await commit(client, outbox, [first]);
      relay.wake();
      await until('the first touch is a job', 10_000, async () => (await queue.getJob(first.touchId)) !== undefined, 20);

      await server.kill();
      await new Promise((r) => setTimeout(r, 600));
      const errors = Number(/nudge_touch_relay_errors_total (\d+)/.exec(await registry.metrics())?.[1]);
      expect(errors).toBeGreaterThanOrEqual(2);
      expect(errors).toBeLessThan(60); // backoff, not a busy loop

      restarted = await startRedisServer({ port: server.port });
      const second = makeTouch();
      await until('redis answers again', 10_000, async () => (await client.ping().catch(() => '')) === 'PONG', 20);
      await commit(client, outbox, [second]);
      relay.wake();
      await until('the second touch is a job', 10_000, async () => (await queue.getJob(second.touchId)) !== undefined, 20);
      expect(await client.hlen(outbox)).toBe(0);
    } finally {
      await relay.stop();
      await queue.close().catch(() => {});
      client.disconnect();
      await restarted?.stop();
      await server.stop();
    }
  });
});

