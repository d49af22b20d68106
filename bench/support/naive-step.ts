import type { Redis } from 'ioredis';
import type { AppEvent } from '../../src/contract/event.js';
import { applyEvents, CounterHash } from '../../src/state/decide.js';
import type { LaneKeys } from '../../src/state/keys.js';
import type { StateSpec } from '../../src/state/spec.js';
import { decodeUserState, encodeUserState, type UserState } from '../../src/state/user-state.js';

/** What a naive consumer carries from one event to the next. */
export interface NaiveLane {
  keys: LaneKeys;
  streamTime: number;
}

/**
 * How a typical hand-written consumer applies one event: GET the user's JSON state, apply that
 * one event (the same pure step Nudge runs, on a one-event batch, so the work per event is the
 * same), SET the state, one HINCRBY per counter increment, one ZADD/ZREM per timer change and one
 * PFADD per HyperLogLog add, each awaited before the next. No fence and no atomicity: it is
 * neither exactly-once nor crash-safe, which only makes it cheaper. Returns the commands sent.
 * Shared by bench/naive.bench.ts (Redis only) and the `naive` variant of bench/pipeline.bench.ts
 * (through Kafka).
 */
export async function applyNaively(redis: Redis, lane: NaiveLane, e: AppEvent, spec: StateSpec, now: number): Promise<number> {
  const k = lane.keys;
  let commands = 1;
  const raw = await redis.get(k.user(e.userId));
  const loaded = new Map<string, UserState | undefined>([[e.userId, raw === null ? undefined : decodeUserState(raw)]]);
  const result = applyEvents([e], loaded, lane.streamTime, now, spec);
  lane.streamTime = result.streamTime;
  for (const [userId, state] of result.states) {
    await redis.set(k.user(userId), encodeUserState(state));
    commands++;
  }
  for (const [suffix, fields] of result.counters) {
    for (const [field, delta] of fields) {
      await redis.hincrby(k.hash(suffix), field, delta);
      commands++;
    }
  }
  for (const [userId, due] of result.timers) {
    if (due === null) await redis.zrem(k.timers, userId);
    else await redis.zadd(k.timers, due, userId);
    commands++;
  }
  for (const add of result.hll.values()) {
    await redis.pfadd(k.hash(CounterHash.hll(add.metric, add.breakdown, add.day, add.value)), ...add.users);
    commands++;
  }
  if (result.outbox.length > 0) throw new Error('a journey fired: the naive consumer models the state step only');
  return commands;
}
