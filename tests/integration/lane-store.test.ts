import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import type { AppEvent } from '../../src/contract/event.js';
import { applyEvents, applyTimers } from '../../src/state/decide.js';
import { LaneStore } from '../../src/state/lane-store.js';
import { StateQueries } from '../../src/state/queries.js';
import { minimalStateSpec } from '../support/state-spec.js';
import { parseDay } from '../../src/time/calendar.js';
import { dropNamespace } from '../support/engine-harness.js';
import { until } from '../support/poll.js';

const DAY = 86_400_000;
const spec = minimalStateSpec();
const T0 = Date.UTC(2026, 10, 2, 9);
const ev = (id: string, userId: string, t: number): AppEvent => ({
  eventId: id, userId, name: 'login', timeMs: t, channel: 'app', props: {}, value: 0, tz: '', deviceId: '', sentMs: 0,
});

let redis: Redis;
const namespace = `t${randomBytes(4).toString('hex')}`;

beforeAll(() => {
  redis = new Redis(inject('redisUrl'));
});
afterAll(async () => {
  await dropNamespace(redis, namespace);
  await redis.quit();
});

describe('LaneStore against a real Redis', () => {
  it('commits a batch atomically, refuses its replay, and fences off a zombie owner', async () => {
    const store = new LaneStore(redis, namespace, 'events');
    const queries = new StateQueries(redis, namespace, 'events', spec);
    const first = await store.claim(0);
    expect(first).toEqual({ epoch: 1, offset: -1, streamTime: 0 });

    const batch = [ev('a', 'u1', T0), ev('b', 'u2', T0 + 1000)];
    const result = applyEvents(batch, await store.loadUsers(0, ['u1', 'u2']), 0, T0, spec);
    expect(await store.commit(0, first.epoch, 10, 11, result)).toBe('committed');
    expect(await store.readFence(0)).toEqual({ epoch: 1, offset: 11, streamTime: T0 + 1000 });
    expect((await queries.active('active', 'dau', parseDay('2026-11-02')!)).count).toBe(2);

    // The same offsets again (a redelivery) change nothing.
    expect(await store.commit(0, first.epoch, 10, 11, result)).toBe('already-applied');
    expect((await queries.active('active', 'dau', parseDay('2026-11-02')!)).count).toBe(2);

    // A second owner claims the lane: the first one's next commit is refused, writing nothing.
    const second = await store.claim(0);
    expect(second).toEqual({ epoch: 2, offset: 11, streamTime: T0 + 1000 });
    const late = applyEvents([ev('c', 'u3', T0 + 2000)], new Map(), T0 + 1000, T0, spec);
    expect(await store.commit(0, first.epoch, 12, 12, late)).toBe('stale-epoch');
    expect(await queries.userState('u3')).toBeNull();
    expect(await store.commit(0, second.epoch, 12, 12, late)).toBe('committed');
    expect((await queries.user('u3', T0 + 3000))?.stage).toBe('new');
    expect((await queries.active('active', 'mau', parseDay('2026-11-30')!)).count).toBe(3);
    expect(await queries.stageCounts()).toMatchObject({ new: 3 });
  });

  it('writes the outbox with the state, and a refused commit writes neither', async () => {
    const store = new LaneStore(redis, namespace, 'outbox');
    const { epoch } = await store.claim(1);
    const result = applyEvents([ev('o1', 'u7', T0)], new Map(), 0, T0, spec);
    result.outbox.push({ field: 'tabc', value: '{"touchId":"tabc"}' }, { field: 'tdef', value: '{"touchId":"tdef"}' });
    expect(await store.commit(1, epoch, 0, 0, result)).toBe('committed');
    expect(await redis.hgetall(store.keys(1).outbox)).toEqual({ tabc: '{"touchId":"tabc"}', tdef: '{"touchId":"tdef"}' });
    await redis.del(store.keys(1).outbox); // the relay drained it
    expect(await store.commit(1, epoch, 0, 0, result)).toBe('already-applied');
    expect(await store.commit(1, epoch - 1, 1, 1, result)).toBe('stale-epoch');
    expect(await redis.exists(store.keys(1).outbox)).toBe(0);
  });

  it('writes HyperLogLog breakdown sketches that expire (bounded memory however long it runs)', async () => {
    const store = new LaneStore(redis, namespace, 'hll');
    const { epoch } = await store.claim(2);
    const wide = minimalStateSpec({ breakdowns: [{ name: 'ch', source: { kind: 'channel' }, values: null, maxValues: 10 }] });
    const result = applyEvents([ev('h1', 'u1', T0), ev('h2', 'u2', T0)], new Map(), 0, T0, wide);
    expect(await store.commit(2, epoch, 0, 1, result)).toBe('committed');
    const key = store.keys(2).hash(`h:active:ch:${parseDay('2026-11-02')!}:app`);
    expect(await redis.pfcount(key)).toBe(2);
    const ttl = await redis.pttl(key);
    expect(ttl).toBeGreaterThan(399 * DAY);
    expect(ttl).toBeLessThanOrEqual(400 * DAY);
  });

  it('keeps timers in a sorted set that the sweep reads by due time', async () => {
    const store = new LaneStore(redis, namespace, 'timers');
    const { epoch } = await store.claim(3);
    const result = applyEvents([ev('x', 'u9', T0)], new Map(), 0, T0, spec);
    expect(await store.commit(3, epoch, 0, 0, result)).toBe('committed');
    expect(await store.dueTimers(3, T0 + 7 * DAY - 1, 10)).toEqual([]);
    expect(await store.dueTimers(3, T0 + 7 * DAY, 10)).toEqual(['u9']);
  });

  it('a timer batch sent again after its reply was lost is applied once (its stage counts are not added twice)', async () => {
    const store = new LaneStore(redis, namespace, 'timer-retry');
    const { epoch } = await store.claim(8);
    expect(await store.commit(8, epoch, 0, 1, applyEvents([ev('t0', 'u80', T0), ev('t1', 'u81', T0)], new Map(), 0, T0, spec))).toBe('committed');
    const hashes = async (keys: string[]) => Promise.all(keys.map((k) => redis.hgetall(k)));
    const dormant = async (userId: string) => {
      const loaded = await store.loadUsers(8, [userId]);
      const result = applyTimers([userId], loaded, T0 + 15 * DAY, spec);
      expect(result.transitions.map((t) => t.to)).toEqual(['dormant']);
      const prepared = store.prepareCommit(8, epoch, -1, -1, result);
      const counterKeys = prepared.keys.slice(3 + result.states.size, 3 + result.states.size + result.counters.size);
      expect(counterKeys.length).toBeGreaterThan(0);
      return { prepared, counterKeys };
    };
    const first = await dormant('u80');
    const before = await hashes(first.counterKeys);
    expect(await store.sendCommit(first.prepared)).toBe('committed');
    const applied = await hashes(first.counterKeys);
    expect(applied).not.toEqual(before);
    // The script finds its token (the last applied) and writes nothing again: the commit it was.
    expect(await store.sendCommit(first.prepared)).toBe('committed');
    expect(await hashes(first.counterKeys)).toEqual(applied);
    // The next timer batch has a token of its own and lands.
    const second = await dormant('u81');
    expect(await store.sendCommit(second.prepared)).toBe('committed');
    expect(await hashes(second.counterKeys)).not.toEqual(applied);
  });

  it('a fence found behind what Redis acknowledged (lost writes) refuses every commit of the lane until it is claimed again, reported once', async () => {
    const lost: Array<[number, number]> = [];
    const store = new LaneStore(redis, namespace, 'events', (p, seen) => lost.push([p, seen]));
    const { epoch } = await store.claim(5);
    const batch = (id: string, t: number) => applyEvents([ev(id, 'u5', t)], new Map(), 0, T0, spec);
    expect(await store.commit(5, epoch, 0, 9, batch('l0', T0))).toBe('committed');
    // Redis "loses" the last acknowledged write: its fence goes back to 4.
    await redis.hset(store.keys(5).fence, 'offset', '4');
    // The next batch would land above the gap (offsets 5-9 lost): refused, and reported.
    expect(await store.commit(5, epoch, 10, 12, batch('l1', T0 + 1))).toBe('state-lost');
    await until('the state-lost report', 5_000, () => lost.length > 0, 1);
    expect(lost).toEqual([[5, 9]]);
    // Still refused while nobody has claimed the lane again (the old owner's in-flight work),
    // and not reported twice; the fence stays where Redis had it.
    expect(await store.commit(5, epoch, 13, 14, batch('l2', T0 + 2))).toBe('state-lost');
    expect(await store.checkFences([5])).toEqual([]);
    expect((await store.readFence(5)).offset).toBe(4);
    expect(lost).toEqual([[5, 9]]);
    // A new claim starts from Redis' fence: the lost offsets are applied again from there.
    const again = await store.claim(5);
    expect(again.offset).toBe(4);
    expect(await store.commit(5, again.epoch, 5, 9, batch('l3', T0 + 3))).toBe('committed');
  });

  it('a prepared commit is checked against the fence acknowledged when it is sent, not when it was prepared', async () => {
    // The lanes prepare a batch's commit before its dead letters and sign-ups are sent; Redis can
    // lose writes in between, and the commit must then be refused like any other.
    const lost: Array<[number, number]> = [];
    const store = new LaneStore(redis, namespace, 'events', (p, seen) => lost.push([p, seen]));
    const { epoch } = await store.claim(7);
    const batch = (id: string, t: number) => applyEvents([ev(id, 'u7', t)], new Map(), 0, T0, spec);
    const later = store.prepareCommit(7, epoch, 10, 12, batch('p1', T0 + 1));
    expect(await store.commit(7, epoch, 0, 9, batch('p0', T0))).toBe('committed');
    await redis.hset(store.keys(7).fence, 'offset', '4');
    expect(await store.sendCommit(later)).toBe('state-lost');
    expect((await store.readFence(7)).offset).toBe(4);
    await until('the state-lost report', 5_000, () => lost.length > 0, 1);
    expect(lost).toEqual([[7, 9]]);
  });

  it('checkFences finds an idle lane whose fence Redis lost and reports it once', async () => {
    const lost: number[] = [];
    const store = new LaneStore(redis, namespace, 'events', (p) => lost.push(p));
    const { epoch } = await store.claim(6);
    expect(await store.commit(6, epoch, 0, 3, applyEvents([ev('i0', 'u6', T0)], new Map(), 0, T0, spec))).toBe('committed');
    expect(await store.checkFences([6])).toEqual([]);
    await redis.hdel(store.keys(6).fence, 'offset');
    expect(await store.checkFences([6])).toEqual([6]);
    expect(await store.checkFences([6])).toEqual([]);
    expect(lost).toEqual([6]);
  });
});
