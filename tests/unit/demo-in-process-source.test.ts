import { describe, expect, it } from 'vitest';
import type { PartitionBatch } from '../../src/pipeline/types.js';
import { InProcessSource, MemoryDeadLetters } from '../../src/sources/in-process-source.js';
import type { SourceListener } from '../../src/sources/kafka-source.js';

/**
 * The demo's in-process source (DESIGN §2.5) stands in for a Kafka topic and a consumer group
 * member: per-partition order and offsets, resume at the state's fence, and backpressure —
 * a batch is handed over only once the previous one of its partition was accepted, and
 * producers wait once a partition holds `maxQueued` messages.
 */

/** A listener that records batches and lets a test decide when each `onBatch` resolves. */
function recorder(o: { resume?: Map<number, number>; hold?: boolean } = {}) {
  const batches: PartitionBatch[] = [];
  const pending: Array<() => void> = [];
  const outstanding = new Map<number, number>();
  let maxOutstanding = 0;
  let assigned: number[] = [];
  const listener: SourceListener = {
    onAssigned: async (partitions) => {
      assigned = partitions;
      return o.resume ?? new Map();
    },
    onRevoked: () => {},
    onBatch: (batch) => {
      batches.push(batch);
      const now = (outstanding.get(batch.partition) ?? 0) + 1;
      outstanding.set(batch.partition, now);
      maxOutstanding = Math.max(maxOutstanding, now);
      const done = (): void => {
        outstanding.set(batch.partition, (outstanding.get(batch.partition) ?? 1) - 1);
      };
      if (!o.hold) {
        done();
        return Promise.resolve();
      }
      return new Promise<void>((resolve) =>
        pending.push(() => {
          done();
          resolve();
        }),
      );
    },
  };
  return {
    listener,
    batches,
    /** Resolves the oldest held `onBatch`. */
    release: () => pending.shift()?.(),
    releaseAll: () => {
      while (pending.length > 0) pending.shift()?.();
    },
    held: () => pending.length,
    maxOutstanding: () => maxOutstanding,
    assigned: () => assigned,
  };
}

const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));
const value = (text: string): Buffer => Buffer.from(text, 'utf8');

describe('InProcessSource', () => {
  it('assigns every partition and numbers offsets from where the state stands (fence + 1), 0 where nothing was applied', async () => {
    const source = new InProcessSource({ partitions: 3 });
    const r = recorder({ resume: new Map([[1, 42]]) });
    await source.start(r.listener);
    expect(r.assigned()).toEqual([0, 1, 2]);
    expect(source.assignedPartitions()).toEqual([0, 1, 2]);
    expect(source.isConnected()).toBe(true);
    // Find a key for each partition, then produce two events to each.
    const keyOf = new Map<number, string>();
    for (let i = 0; keyOf.size < 3; i++) if (!keyOf.has(source.partitionOf(`u${i}`))) keyOf.set(source.partitionOf(`u${i}`), `u${i}`);
    for (const p of [0, 1, 2]) {
      await source.produce(keyOf.get(p)!, value(`${p}-a`));
      await source.produce(keyOf.get(p)!, value(`${p}-b`));
    }
    await tick();
    const offsets = (p: number) => r.batches.filter((b) => b.partition === p).flatMap((b) => b.messages.map((m) => m.offset));
    expect(offsets(0)).toEqual([0, 1]);
    expect(offsets(1)).toEqual([42, 43]);
    expect(offsets(2)).toEqual([0, 1]);
    await source.stop();
    expect(source.isConnected()).toBe(false);
  });

  it('keeps one key in one partition and hands each partition its messages in order, with contiguous offsets', async () => {
    const source = new InProcessSource({ partitions: 4, maxBatch: 7, maxQueued: 50 });
    const r = recorder();
    await source.start(r.listener);
    const keys = Array.from({ length: 25 }, (_, i) => `user-${i}`);
    const sent = new Map<string, string[]>();
    for (let i = 0; i < 2_000; i++) {
      const key = keys[(i * 7919) % keys.length]!;
      const v = `${key}#${i}`;
      sent.set(key, [...(sent.get(key) ?? []), v]);
      await source.produce(key, value(v));
    }
    expect(await source.drained(0)).toBe(false); // nothing committed yet: the lag is everything
    await tick(10);

    const partitionsOfKey = new Map<string, Set<number>>();
    const seen = new Map<string, string[]>();
    for (const p of [0, 1, 2, 3]) {
      const messages = r.batches.filter((b) => b.partition === p).flatMap((b) => b.messages);
      // Offsets of a partition: 0, 1, 2, ... in the order handed over.
      expect(messages.map((m) => m.offset)).toEqual(messages.map((_, i) => i));
      for (const m of messages) {
        expect(m.partition).toBe(p);
        expect(typeof m.timestamp).toBe('number');
        const key = String(m.key);
        partitionsOfKey.set(key, (partitionsOfKey.get(key) ?? new Set()).add(p));
        seen.set(key, [...(seen.get(key) ?? []), (m.value as Buffer).toString('utf8')]);
      }
    }
    for (const key of keys) expect([...(partitionsOfKey.get(key) ?? [])]).toEqual([source.partitionOf(key)]);
    expect(seen).toEqual(sent);
    expect(r.batches.every((b) => b.messages.length >= 1 && b.messages.length <= 7)).toBe(true);
    // Spread over the partitions, not all in one.
    expect(new Set(keys.map((k) => source.partitionOf(k))).size).toBeGreaterThan(1);
    await source.stop();
  });

  it('awaits onBatch: one batch of a partition at a time, and producers wait once the partition is full', async () => {
    const source = new InProcessSource({ partitions: 1, maxBatch: 10, maxQueued: 20 });
    const r = recorder({ hold: true });
    await source.start(r.listener);
    let produced = 0;
    const producing = (async () => {
      for (let i = 0; i < 100; i++) {
        await source.produce('k', value(String(i)));
        produced++;
      }
    })();
    await tick(20);
    const handedOver = (): number => r.batches.reduce((a, b) => a + b.messages.length, 0);
    // One batch handed over and not accepted, 20 queued behind it (full), the producer waits.
    expect(r.batches.length).toBe(1);
    expect(r.held()).toBe(1);
    expect(produced).toBe(handedOver() + 20);
    await tick(20);
    expect(r.batches.length).toBe(1); // the next batch waits for this one to be accepted
    expect(produced).toBe(handedOver() + 20); // and so does the producer

    r.release(); // the pipeline accepts the first batch: the next one goes, the producer gets room
    await tick(20);
    expect(r.batches.length).toBe(2);
    expect(r.batches[1]!.messages.length).toBe(10); // a full batch from the full queue
    expect(produced).toBe(handedOver() + 20);

    // Accept everything as it comes until the producer is done.
    const releaser = setInterval(() => r.releaseAll(), 1);
    await producing;
    while (r.batches.reduce((a, b) => a + b.messages.length, 0) < 100) await tick(2);
    clearInterval(releaser);
    r.releaseAll();
    expect(r.maxOutstanding()).toBe(1);
    expect(r.batches.flatMap((b) => b.messages.map((m) => (m.value as Buffer).toString()))).toEqual(Array.from({ length: 100 }, (_, i) => String(i)));
    await source.stop();
  });

  it('reports lag until the pipeline commits, and drained() resolves at the last commit', async () => {
    const source = new InProcessSource({ partitions: 2 });
    const r = recorder();
    await source.start(r.listener);
    for (let i = 0; i < 10; i++) await source.produce(`u${i}`, value('x'));
    expect(source.producedCount()).toBe(10);
    expect(source.lag()).toBe(10);
    const drained = source.drained(5_000);
    await tick();
    // The lanes commit each batch's next offset once its state is in Redis.
    for (const b of r.batches) source.commit(b.partition, (b.messages.at(-1)?.offset ?? -1) + 1);
    expect(source.lag()).toBe(0);
    expect(await drained).toBe(true);
    // A stale commit (lower) changes nothing; one for an unknown partition is ignored.
    source.commit(0, 0);
    source.commit(9, 100);
    expect(source.lag()).toBe(0);
    await source.stop();
  });

  it('stops within its wait even when the pipeline holds a batch, and releases waiting producers with an error', async () => {
    const source = new InProcessSource({ partitions: 1, maxBatch: 1, maxQueued: 1 });
    const r = recorder({ hold: true });
    await source.start(r.listener);
    await source.produce('k', value('1')); // handed over, held
    await tick(5);
    await source.produce('k', value('2')); // queued
    const blocked = source.produce('k', value('3')).then(() => null, (err: Error) => err); // waits for room
    const started = Date.now();
    await source.stop(100);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect((await blocked)?.message).toMatch(/stopped/);
    await expect(source.produce('k', value('4'))).rejects.toThrow(/stopped/);
    r.releaseAll();
  });

  it('takes POST /v1/events messages (sendAndWait) into the partition of their key', async () => {
    const source = new InProcessSource({ partitions: 4 });
    const r = recorder();
    await source.start(r.listener);
    await source.sendAndWait('nudge.events', [
      { key: 'alice', value: value('a1') },
      { key: Buffer.from('bob'), value: value('b1') },
    ]);
    await tick();
    const where = (text: string) => r.batches.find((b) => b.messages.some((m) => (m.value as Buffer).toString() === text))?.partition;
    expect(where('a1')).toBe(source.partitionOf('alice'));
    expect(where('b1')).toBe(source.partitionOf('bob'));
    await expect(source.sendAndWait('nudge.events', [{ key: null, value: value('x') }])).rejects.toThrow(/key and a value/);
    await source.stop();
  });

  it('refuses nonsense options', () => {
    expect(() => new InProcessSource({ partitions: 0 })).toThrow(RangeError);
    expect(() => new InProcessSource({ maxBatch: 1.5 })).toThrow(RangeError);
    expect(() => new InProcessSource({ maxQueued: -1 })).toThrow(RangeError);
  });
});

describe('MemoryDeadLetters', () => {
  it('counts dead letters by code and keeps the latest few without their bytes', async () => {
    const dlq = new MemoryDeadLetters(2);
    const entry = (offset: number, code: string) => ({ partition: 0, offset, key: 'u1', value: Buffer.from('secret'), code, reason: 'bad' });
    await dlq.send([entry(1, 'NUDGE_EVENT_BAD_TZ'), entry(2, 'NUDGE_EVENT_BAD_TZ')]);
    await dlq.send([entry(3, 'NUDGE_EVENT_MISSING_USER_ID')]);
    expect(dlq.total).toBe(3);
    expect(Object.fromEntries(dlq.byCode)).toEqual({ NUDGE_EVENT_BAD_TZ: 2, NUDGE_EVENT_MISSING_USER_ID: 1 });
    expect(dlq.latest.map((d) => d.offset)).toEqual([2, 3]);
    expect(JSON.stringify(dlq.latest)).not.toContain('secret');
  });
});
