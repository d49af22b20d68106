import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { laneKeys, lanesKey, type LaneKeys } from './keys.js';
import { OTHER } from './breakdown.js';
import { CounterHash, type StepResult } from './decide.js';
import { decodeUserState, encodeUserState, type UserState } from './user-state.js';

const COMMIT_BATCH_LUA = readFileSync(new URL('./commit-batch.lua', import.meta.url), 'utf8');

export interface LaneFence {
  epoch: number;
  /** Last applied offset, -1 when nothing was applied yet. */
  offset: number;
  streamTime: number;
}

export type CommitOutcome = 'committed' | 'stale-epoch' | 'already-applied';

interface CommitCommand {
  nudgeCommitBatch(numKeys: number, ...keysAndArgs: (string | number)[]): Promise<number>;
}

/**
 * The Redis edge of the state step for the lanes of one topic: claim a lane (new epoch),
 * load the users of a batch in one round trip, commit a batch in one script call.
 */
export class LaneStore {
  private readonly keysByLane = new Map<number, LaneKeys>();

  constructor(
    private readonly redis: Redis,
    private readonly namespace: string,
    private readonly topic: string,
  ) {
    if (!(redis as unknown as Partial<CommitCommand>).nudgeCommitBatch) {
      redis.defineCommand('nudgeCommitBatch', { lua: COMMIT_BATCH_LUA });
    }
  }

  keys(partition: number): LaneKeys {
    let k = this.keysByLane.get(partition);
    if (k === undefined) {
      k = laneKeys(this.namespace, this.topic, partition);
      this.keysByLane.set(partition, k);
    }
    return k;
  }

  /**
   * Takes ownership of a lane: a new epoch makes any previous owner's late commits fail
   * (a zombie after a rebalance), and the fence says where the state stands.
   */
  async claim(partition: number): Promise<LaneFence> {
    const k = this.keys(partition);
    const [[, epoch], [, fields]] = (await this.redis
      .multi()
      .hincrby(k.fence, 'epoch', 1)
      .hmget(k.fence, 'offset', 'streamTime')
      .sadd(lanesKey(this.namespace, this.topic), String(partition))
      .exec()) as [[null, number], [null, (string | null)[]], [null, number]];
    return {
      epoch: Number(epoch),
      offset: fields[0] == null ? -1 : Number(fields[0]),
      streamTime: fields[1] == null ? 0 : Number(fields[1]),
    };
  }

  async readFence(partition: number): Promise<LaneFence> {
    const [epoch, offset, streamTime] = await this.redis.hmget(this.keys(partition).fence, 'epoch', 'offset', 'streamTime');
    return {
      epoch: epoch == null ? 0 : Number(epoch),
      offset: offset == null ? -1 : Number(offset),
      streamTime: streamTime == null ? 0 : Number(streamTime),
    };
  }

  async loadUsers(partition: number, userIds: readonly string[]): Promise<Map<string, UserState | undefined>> {
    const out = new Map<string, UserState | undefined>();
    if (userIds.length === 0) return out;
    const k = this.keys(partition);
    const values = await this.redis.mget(userIds.map((u) => k.user(u)));
    for (let i = 0; i < userIds.length; i++) {
      const v = values[i];
      out.set(userIds[i] as string, v == null ? undefined : decodeUserState(v));
    }
    return out;
  }

  /** Users of the lane whose timers are due at `now`, oldest first. */
  async dueTimers(partition: number, now: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys(partition).timers, '-inf', now, 'LIMIT', 0, limit);
  }

  async timerBacklog(partition: number, now: number): Promise<{ due: number; oldestDue: number | null }> {
    const k = this.keys(partition);
    const [count, oldest] = await Promise.all([
      this.redis.zcount(k.timers, '-inf', now),
      this.redis.zrange(k.timers, '0', '0', 'WITHSCORES'),
    ]);
    return { due: count, oldestDue: oldest.length === 2 ? Number(oldest[1]) : null };
  }

  /**
   * Commits a step result. `firstOffset` -1 marks a timer batch (nothing to fence). The batch is
   * refused, with nothing written, when the epoch is stale or the offsets were applied before.
   */
  async commit(partition: number, epoch: number, firstOffset: number, lastOffset: number, result: StepResult): Promise<CommitOutcome> {
    const k = this.keys(partition);
    const keys: string[] = [k.fence, k.timers, k.outbox];
    const args: (string | number)[] = [epoch, firstOffset, lastOffset, result.streamTime, result.states.size, result.timers.size, result.counters.size];
    for (const userId of result.states.keys()) keys.push(k.user(userId));
    for (const state of result.states.values()) args.push(encodeUserState(state));
    for (const [userId, due] of result.timers) args.push(userId, due === null ? '' : due);
    for (const [suffix, fields] of result.counters) {
      keys.push(k.hash(suffix));
      args.push(fields.size);
      for (const [field, delta] of fields) args.push(field, delta);
    }
    args.push(result.hll.size);
    for (const add of result.hll.values()) {
      keys.push(
        k.hash(CounterHash.hllValues(add.metric, add.breakdown)),
        k.hash(CounterHash.hll(add.metric, add.breakdown, add.day, add.value)),
        k.hash(CounterHash.hll(add.metric, add.breakdown, add.day, OTHER)),
      );
      args.push(add.maxValues, add.value, add.users.size, ...add.users);
    }
    args.push(result.outbox.length);
    for (const entry of result.outbox) args.push(entry.field, entry.value);
    const code = await (this.redis as unknown as CommitCommand).nudgeCommitBatch(keys.length, ...keys, ...args);
    if (code === 1) return 'committed';
    if (code === -1) return 'stale-epoch';
    return 'already-applied';
  }
}
