import type { Redis } from 'ioredis';
import { outboxRejectsKey } from './keys.js';
import type { OutboxEntry } from './outbox-entry.js';
import { withTouchScripts } from './scripts.js';

/**
 * The Redis edge of the outbox relay: read entries of many outboxes in one round trip, clear
 * what was relayed (compare-and-delete), and count what is left.
 */
export class OutboxStore {
  private readonly redis: ReturnType<typeof withTouchScripts>;

  constructor(redis: Redis) {
    this.redis = withTouchScripts(redis);
  }

  /**
   * Up to about `limit` entries of each outbox (HSCAN from the start: cleared entries are gone,
   * so every pass starts over and sees what is left). One pipelined round trip for all keys.
   */
  async read(keys: readonly string[], limit: number): Promise<Map<string, OutboxEntry[]>> {
    const out = new Map<string, OutboxEntry[]>();
    if (keys.length === 0) return out;
    const pipeline = this.redis.pipeline();
    for (const key of keys) pipeline.hscan(key, '0', 'COUNT', limit);
    const replies = (await pipeline.exec()) ?? [];
    keys.forEach((key, i) => {
      const [err, reply] = replies[i] ?? [new Error('no reply'), null];
      if (err) throw err;
      const flat = (reply as [string, string[]])[1];
      const entries: OutboxEntry[] = [];
      for (let j = 0; j + 1 < flat.length && entries.length < limit; j += 2) entries.push({ field: flat[j] as string, value: flat[j + 1] as string });
      if (entries.length > 0) out.set(key, entries);
    });
    return out;
  }

  /** Removes relayed entries (and sets aside rejected ones) that still hold the value read. */
  async clear(key: string, added: readonly OutboxEntry[], rejected: readonly OutboxEntry[]): Promise<number> {
    if (added.length === 0 && rejected.length === 0) return 0;
    const pairs: string[] = [];
    for (const e of added) pairs.push(e.field, e.value);
    for (const e of rejected) pairs.push(e.field, e.value);
    return this.redis.nudgeClearOutbox(key, outboxRejectsKey(key), added.length, rejected.length, ...pairs);
  }

  /** Entries waiting in these outboxes (HLEN each, one round trip). */
  async depth(keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0;
    const pipeline = this.redis.pipeline();
    for (const key of keys) pipeline.hlen(key);
    const replies = (await pipeline.exec()) ?? [];
    let total = 0;
    for (const [err, n] of replies) {
      if (err) throw err;
      total += Number(n);
    }
    return total;
  }
}

/** Touches waiting in the given outboxes; the function form of `OutboxRelay.depth()`. */
export function outboxDepth(redis: Redis, keys: readonly string[]): Promise<number> {
  return new OutboxStore(redis).depth(keys);
}
