import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AppEvent } from '../../src/contract/event.js';
import { applyEvents } from '../../src/state/decide.js';
import { recentIdKey } from '../../src/state/recent-ids.js';
import { minimalStateSpec } from '../support/state-spec.js';
import { decodeUserState, encodeUserState, type UserState } from '../../src/state/user-state.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 10, 2, 9);
const spec = minimalStateSpec({ sums: [{ name: 'paid', filter: { names: new Set(['payment']), props: {} }, windowMs: 7 * DAY, bucketMs: DAY }] });
const ev = (eventId: string, t: number, value = 1): AppEvent => ({
  eventId, userId: 'u1', name: 'payment', timeMs: t, channel: 'app', props: {}, value, tz: '', deviceId: '', sentMs: 0,
});
/** Applies batches one after another, through the stored encoding, as the lanes do. */
function replay(batches: AppEvent[][], start?: UserState): UserState {
  let s = start;
  for (const b of batches) {
    const r = applyEvents(b, new Map([['u1', s === undefined ? undefined : decodeUserState(encodeUserState(s))]]), 0, T0 + DAY, spec);
    s = r.states.get('u1') ?? s;
  }
  return s as UserState;
}
const paid = (s: UserState): number => (s.sums['paid'] ?? []).reduce((sum, [, v]) => sum + v, 0);

describe('recent event ids', () => {
  it('keeps ids up to 15 characters as they are and hashes longer ones to 15', () => {
    expect(recentIdKey('e1')).toBe('e1');
    expect(recentIdKey('0123456789abcde')).toBe('0123456789abcde');
    const uuid = '3f2c8a52-9d1e-4b6a-8f0e-2b7c5d9a1e44';
    expect(recentIdKey(uuid)).toMatch(/^#[0-9a-v]{14}$/);
    // A function of the id's characters alone: the same id built another way gives the same key.
    expect(recentIdKey(uuid)).toBe(recentIdKey(uuid.split('-').join('-')));
    expect(recentIdKey(uuid)).not.toBe(recentIdKey(uuid.toUpperCase()));
    expect(recentIdKey('0123456789abcdef')).not.toBe('0123456789abcdef');
    // An id shaped like a hash is hashed too, so it cannot be mistaken for another id's hash.
    expect(recentIdKey('#short')).not.toBe('#short');
    expect(recentIdKey('#short')).toMatch(/^#[0-9a-v]{14}$/);
  });

  it('gives 300,000 distinct UUIDs and their near neighbours 300,000 distinct keys each', () => {
    const keys = new Set<string>();
    const ids: string[] = [];
    for (let i = 0; i < 150_000; i++) {
      const id = randomUUID();
      ids.push(id, `${id.slice(0, 35)}${id[35] === '0' ? '1' : '0'}`); // one character apart
    }
    for (const id of ids) keys.add(recentIdKey(id));
    expect(new Set(ids).size).toBe(300_000);
    expect(keys.size).toBe(300_000);
  });

  it('drops a retried UUID event, in the batch and in later batches, and keeps the stored list short', () => {
    const ids = Array.from({ length: 40 }, () => randomUUID());
    const s = replay([ids.slice(0, 20).map((id, i) => ev(id, T0 + i)), [...ids.slice(10, 40), ...ids.slice(35, 40)].map((id, i) => ev(id, T0 + 100 + i))]);
    expect(paid(s)).toBe(40);
    expect(s.recentIds).toHaveLength(32);
    expect(s.recentIds.every((k) => k.length === 15)).toBe(true);
    // The 32 latest ids (8 to 39) are still recognised; one that left the list is applied again.
    const again = replay([[ev(ids[39] as string, T0 + 500), ev(ids[8] as string, T0 + 501), ev(ids[0] as string, T0 + 502)]], s);
    expect(paid(again)).toBe(40 + 1);
    expect(JSON.stringify(s.recentIds).length).toBeLessThan(JSON.stringify(ids.slice(8)).length / 2);
  });

  it('recognises a retry of an event stored, before ids were hashed, with its id as it was', () => {
    const uuid = randomUUID();
    const before = replay([[ev('a1', T0)]]);
    const stored: UserState = { ...before, recentIds: [...before.recentIds, uuid], sums: { paid: [[Math.floor(T0 / DAY) * DAY, 2]] } };
    const after = replay([[ev(uuid, T0 + 5), ev('a2', T0 + 6)]], stored);
    expect(paid(after)).toBe(3);
    expect(after.recentIds).toEqual(['a1', uuid, 'a2']);
  });
});
