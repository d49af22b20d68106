import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { deviceHash, deviceSetId, signupKey, type DevicePlan, type SignupWrite } from '../../src/state/device-signups.js';
import { DeviceSignupStore } from '../../src/state/device-store.js';
import { deviceSignupsKey } from '../../src/state/keys.js';
import type { DeviceSignupSpec } from '../../src/state/spec.js';
import { dropNamespace } from '../support/engine-harness.js';

/** The device sign-up sets in a real Redis: first sign-up kept, bounded by age and count, read after the writes. */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 11, 1);
const namespace = `d${randomBytes(4).toString('hex')}`;
const spec: DeviceSignupSpec = { name: 'signups', filter: { names: new Set(['register']), props: {} }, withinMs: DAY, keepForMs: 10 * DAY, maxPerDevice: 10 };
const set = deviceSetId('signups', deviceHash('farm'));
const key = deviceSignupsKey(namespace, 'events', set);

let redis: Redis;
beforeAll(() => {
  redis = new Redis(inject('redisUrl'));
});
afterAll(async () => {
  await dropNamespace(redis, namespace);
  await redis.quit();
});

const write = (userId: string, at: number): SignupWrite => ({ set, spec, device: deviceHash('farm'), userId, at });
const plan = (writes: SignupWrite[], read = true): DevicePlan => ({ writes, reads: new Map(read ? [[set, { spec, device: deviceHash('farm') }]] : []) });

describe('DeviceSignupStore against a real Redis', () => {
  it('counts a sign-up written in the same call, keeps a user\'s first sign-up, and a re-run adds nothing', async () => {
    const store = new DeviceSignupStore(redis, namespace, 'events');
    const first = await store.apply(plan([write('a', T0), write('b', T0 + HOUR)]));
    expect(first.sets).toEqual(new Map([[set, [['a', T0], ['b', T0 + HOUR]]]]));
    expect(first.written).toEqual(new Set([signupKey(set, 'a'), signupKey(set, 'b')]));
    // The same batch again (a crash before its commit) and a later sign-up of a on this device.
    expect((await store.apply(plan([write('a', T0), write('b', T0 + HOUR), write('a', T0 + 2 * HOUR)]))).sets).toEqual(new Map([[set, [['a', T0], ['b', T0 + HOUR]]]]));
    expect(await redis.zscore(key, 'a')).toBe(String(T0));
  });

  it('drops sign-ups older than keepFor before the newest, keeps the newest maxPerDevice, and expires the set', async () => {
    const store = new DeviceSignupStore(redis, namespace, 'events');
    await store.apply(plan([write('late', T0 + 11 * DAY)], false));
    expect(await redis.zrange(key, '0', '-1')).toEqual(['late']); // a and b were more than 10 days older
    const many = Array.from({ length: 15 }, (_, i) => write(`u${i}`, T0 + 11 * DAY + (i + 1) * 1000));
    const read = await store.apply(plan(many));
    expect(read.sets.get(set)).toEqual(many.slice(5).map((w) => [w.userId, w.at]));
    const ttl = await redis.pttl(key);
    expect(ttl).toBeGreaterThan(10 * DAY - 60_000);
    expect(ttl).toBeLessThanOrEqual(10 * DAY);
    // Its own Cluster slot: the key is one hash tag, naming no device id.
    expect(key).toMatch(/^\{[^}]+\}$/);
    expect(key).not.toContain('farm');
  });

  it('reads an unknown device as no sign-ups', async () => {
    const store = new DeviceSignupStore(redis, namespace, 'events');
    const other = deviceSetId('signups', deviceHash('never-seen'));
    expect((await store.apply({ writes: [], reads: new Map([[other, { spec, device: deviceHash('never-seen') }]]) })).sets).toEqual(new Map([[other, []]]));
  });
});
