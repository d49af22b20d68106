import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { deviceHash, deviceSetId } from '../../src/state/device-signups.js';
import { DeviceSignupStore, type SignupWrite } from '../../src/state/device-store.js';
import { deviceSignupsKey } from '../../src/state/keys.js';
import type { DeviceSignupSpec } from '../../src/state/spec.js';
import { dropNamespace } from '../support/engine-harness.js';

/**
 * The device sign-up sets in a real Redis: each sign-up once with where it was applied (a re-run
 * adds nothing), bounded by age and count with a TTL, read back within a time range.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 11, 1);
const namespace = `d${randomBytes(4).toString('hex')}`;
const spec: DeviceSignupSpec = { name: 'signups', filter: { names: new Set(['register']), props: {} }, withinMs: DAY, keepForMs: 10 * DAY, maxPerDevice: 10 };
const set = deviceSetId('signups', deviceHash('farm'));
const key = deviceSignupsKey(namespace, 'events', set);
const all = new Map([[set, { from: Number.NEGATIVE_INFINITY, to: Number.POSITIVE_INFINITY }]]);

let redis: Redis;
beforeAll(() => {
  redis = new Redis(inject('redisUrl'));
});
afterAll(async () => {
  await dropNamespace(redis, namespace);
  await redis.quit();
});

let offset = 0;
const signup = (userId: string, at: number, partition = 0): SignupWrite => ({ set, spec, userId, at, eventId: `e${offset}`, partition, offset: offset++ });

describe('DeviceSignupStore against a real Redis', () => {
  it('stores each sign-up once with its partition and offset, and reads it back in a time range', async () => {
    const store = new DeviceSignupStore(redis, namespace, 'events');
    const a = signup('a', T0, 3);
    const b = signup('user:with:colons', T0 + HOUR);
    await store.write([a, b]);
    await store.write([a, { ...b, at: T0 + 2 * HOUR }]); // a re-run (a clamped time may differ): NX keeps the first
    expect((await store.read(all)).get(set)).toEqual([
      { partition: 3, offset: a.offset, userId: 'a', at: T0 },
      { partition: 0, offset: b.offset, userId: 'user:with:colons', at: T0 + HOUR },
    ]);
    expect((await store.read(new Map([[set, { from: T0 + 1, to: T0 + HOUR }]]))).get(set)!.map((s) => s.userId)).toEqual(['user:with:colons']);
  });

  it('drops sign-ups older than keepFor before the newest, keeps the newest maxPerDevice, and expires the set', async () => {
    const store = new DeviceSignupStore(redis, namespace, 'events');
    await store.write([signup('late', T0 + 11 * DAY)]);
    expect((await store.read(all)).get(set)!.map((s) => s.userId)).toEqual(['late']); // a and the other were over 10 days older
    const many = Array.from({ length: 15 }, (_, i) => signup(`u${i}`, T0 + 11 * DAY + (i + 1) * 1000));
    await store.write(many);
    expect((await store.read(all)).get(set)!.map((s) => s.at)).toEqual(many.slice(5).map((w) => w.at));
    const ttl = await redis.pttl(key);
    expect(ttl).toBeGreaterThan(10 * DAY - 60_000);
    expect(ttl).toBeLessThanOrEqual(10 * DAY);
    // One key per device, one hash tag, naming no device id.
    expect(key).toMatch(/^\{[^}]+\}$/);
    expect(key).not.toContain('farm');
  });

  it('reads an unknown device as no sign-ups', async () => {
    const store = new DeviceSignupStore(redis, namespace, 'events');
    const other = deviceSetId('signups', deviceHash('never-seen'));
    expect(await store.read(new Map([[other, { from: 0, to: T0 }]]))).toEqual(new Map([[other, []]]));
  });
});
