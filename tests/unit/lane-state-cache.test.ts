import { describe, expect, it } from 'vitest';
import { LaneStateCache } from '../../src/pipeline/lane-state-cache.js';
import type { UserState } from '../../src/state/user-state.js';

const state = (firstSeen: number): UserState => ({
  firstSeen, lastSeen: firstSeen, tz: '', stage: 'new', stageSince: firstSeen, active: {}, counters: {}, sums: {}, streaks: {}, traits: {}, recentIds: [],
});

describe('LaneStateCache', () => {
  it('hands out what was committed and names the rest to load', () => {
    const cache = new LaneStateCache(10);
    cache.putCommitted(new Map([['a', state(1)], ['b', state(2)]]));
    const into = new Map<string, UserState | undefined>();
    expect(cache.take(['a', 'c', 'b'], into)).toEqual(['c']);
    expect(into.get('a')?.firstSeen).toBe(1);
    expect(into.get('b')?.firstSeen).toBe(2);
    expect(into.has('c')).toBe(false);
  });

  it('keeps at most maxUsers, dropping the least recently used first', () => {
    const cache = new LaneStateCache(3);
    cache.putCommitted(new Map([['a', state(1)], ['b', state(2)], ['c', state(3)]]));
    cache.take(['a'], new Map()); // a is now the most recent
    cache.putCommitted(new Map([['d', state(4)]]));
    expect(cache.size).toBe(3);
    expect(cache.take(['a', 'b', 'c', 'd'], new Map())).toEqual(['b']);
    // A batch larger than the bound keeps its newest users only.
    cache.putCommitted(new Map(['p', 'q', 'r', 's', 't'].map((u, i) => [u, state(i)])));
    expect(cache.size).toBe(3);
    expect(cache.take(['r', 's', 't', 'a'], new Map())).toEqual(['a']);
  });

  it('replaces a user\'s state with the newer commit, and forgets everything on clear', () => {
    const cache = new LaneStateCache(5);
    cache.putCommitted(new Map([['a', state(1)]]));
    cache.putCommitted(new Map([['a', state(9)]]));
    const into = new Map<string, UserState | undefined>();
    cache.take(['a'], into);
    expect(into.get('a')?.firstSeen).toBe(9);
    cache.clear();
    expect(cache.take(['a'], new Map())).toEqual(['a']);
  });

  it('holds nothing with a bound of 0 (the cache off)', () => {
    const cache = new LaneStateCache(0);
    cache.putCommitted(new Map([['a', state(1)]]));
    expect(cache.size).toBe(0);
    expect(cache.take(['a'], new Map())).toEqual(['a']);
  });
});
