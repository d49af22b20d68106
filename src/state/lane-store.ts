import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { laneKeys, lanesKey, type LaneKeys } from './keys.js';
import { OTHER } from './breakdown.js';
import { CounterHash, type StepResult } from './decide.js';
import type { DevicePlan, StoredSignup } from './device-signups.js';
import { DeviceSignupStore, type SignupWrite } from './device-store.js';
import { decodeUserState, encodeUserState, type UserState } from './user-state.js';

const COMMIT_BATCH_LUA = readFileSync(new URL('./commit-batch.lua', import.meta.url), 'utf8');

export interface LaneFence {
  epoch: number;
  /** Last applied offset, -1 when nothing was applied yet. */
  offset: number;
  streamTime: number;
}

/**
 * `stale-epoch`: another owner claimed the lane (a zombie's commit). `state-lost`: Redis' fence is
 * behind what this store saw acknowledged (Redis lost writes); refused until the lane is claimed
 * again and re-read from the fence. `already-applied`: a replay at or below the fence. (A timer
 * batch sent again after it landed, its reply lost, is `committed`: the script finds its token
 * and writes nothing again.)
 */
export type CommitOutcome = 'committed' | 'stale-epoch' | 'state-lost' | 'already-applied';

/**
 * Called when a commit finds Redis' fence below what this store saw acknowledged for the lane:
 * Redis lost writes (restarted from an AOF without its last second, or failed over to a replica
 * that lagged). The lane's in-memory position is then ahead of the state, and its next commit
 * would skip the lost offsets for good; the owner of the partition must claim it again, which
 * reads the fence anew and re-reads the lost offsets from Kafka.
 */
export type StateLostListener = (partition: number, seenOffset: number) => void;

/** A commit's script keys and arguments (LaneStore.prepareCommit), ready to send. */
export interface PreparedCommit {
  partition: number;
  firstOffset: number;
  lastOffset: number;
  keys: string[];
  args: (string | number)[];
}

/** Where the highest acknowledged fence goes in the commit script's arguments (ARGV[8]). */
const SEEN_ARG = 7;

interface CommitCommand {
  nudgeCommitBatch(numKeys: number, ...keysAndArgs: (string | number)[]): Promise<number>;
}

/**
 * The Redis edge of the state step for the lanes of one topic: claim a lane (new epoch),
 * load the users of a batch in one round trip, commit a batch in one script call.
 */
export class LaneStore {
  private readonly keysByLane = new Map<number, LaneKeys>();
  /**
   * Per lane, the highest fence offset Redis acknowledged to this store (claim, read, commit):
   * the commit script refuses a batch when Redis' fence has fallen below it (code -3).
   */
  private readonly seen = new Map<number, number>();
  /**
   * Lanes found behind and reported, until claimed again. `seen` is kept meanwhile, so every
   * further commit of the old owner (same epoch) is refused too: dropping it switched the
   * commit script's check off before the new claim landed, and an old-lane commit could then
   * land above the gap.
   */
  private readonly reported = new Set<number>();
  private readonly devices: DeviceSignupStore;
  /**
   * Timer batches have no offsets: each gets a token, this store's id and a sequence number,
   * that the commit script remembers per lane so a batch sent again is applied once.
   */
  private readonly storeId = randomBytes(6).toString('base64url');
  private timerBatches = 0;

  constructor(
    private readonly redis: Redis,
    private readonly namespace: string,
    private readonly topic: string,
    /** @default none: a lost state is refused ('stale-epoch') and nobody re-claims the lane */
    private readonly onStateLost?: StateLostListener,
  ) {
    if (!(redis as unknown as Partial<CommitCommand>).nudgeCommitBatch) {
      redis.defineCommand('nudgeCommitBatch', { lua: COMMIT_BATCH_LUA });
    }
    this.devices = new DeviceSignupStore(redis, namespace, topic);
  }

  /** The device sign-up sets a batch's deciding events count (device-signups.ts). */
  readDeviceSignups(plan: DevicePlan): Promise<Map<string, StoredSignup[]>> {
    return this.devices.read(plan);
  }

  /** The sign-ups a batch's step recorded, before its commit. */
  writeDeviceSignups(signups: readonly SignupWrite[]): Promise<void> {
    return this.devices.write(signups);
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
    const fence = {
      epoch: Number(epoch),
      offset: fields[0] == null ? -1 : Number(fields[0]),
      streamTime: fields[1] == null ? 0 : Number(fields[1]),
    };
    // A new claim starts from what Redis holds now, whatever an earlier owner saw.
    this.seen.set(partition, fence.offset);
    this.reported.delete(partition);
    return fence;
  }

  async readFence(partition: number): Promise<LaneFence> {
    const [epoch, offset, streamTime] = await this.redis.hmget(this.keys(partition).fence, 'epoch', 'offset', 'streamTime');
    const fence = {
      epoch: epoch == null ? 0 : Number(epoch),
      offset: offset == null ? -1 : Number(offset),
      streamTime: streamTime == null ? 0 : Number(streamTime),
    };
    this.see(partition, fence.offset);
    return fence;
  }

  /**
   * Compares the fences Redis holds with what this store saw acknowledged, for lanes that may
   * not commit again soon (a lane at the end of its partition would never meet the commit
   * script's check): call it when the connection to Redis is back. Reports each lane found
   * behind to the state-lost listener and returns them.
   */
  async checkFences(partitions: readonly number[]): Promise<number[]> {
    const lost: number[] = [];
    for (const partition of partitions) {
      const seen = this.seen.get(partition);
      if (seen === undefined || this.reported.has(partition)) continue;
      const offset = await this.redis.hget(this.keys(partition).fence, 'offset');
      // Compared with what is seen now: a claim or a refused commit meanwhile changed it.
      if (this.seen.get(partition) !== seen || this.reported.has(partition) || (offset == null ? -1 : Number(offset)) >= seen) continue;
      this.reported.add(partition);
      lost.push(partition);
      this.onStateLost?.(partition, seen);
    }
    return lost;
  }

  private see(partition: number, offset: number): void {
    this.seen.set(partition, Math.max(offset, this.seen.get(partition) ?? -1));
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
    return this.sendCommit(this.prepareCommit(partition, epoch, firstOffset, lastOffset, result));
  }

  /**
   * The commit script's keys and arguments for a step result, built once: the caller may then
   * let go of the result's states (the encoded strings are all the script needs), and a commit
   * retried after a failure sends the same arguments again, except ARGV[8], read at each send.
   */
  prepareCommit(partition: number, epoch: number, firstOffset: number, lastOffset: number, result: StepResult): PreparedCommit {
    const k = this.keys(partition);
    const keys: string[] = [k.fence, k.timers, k.outbox];
    // Argument 8 (the highest fence Redis acknowledged) is set when the commit is sent.
    const last = firstOffset >= 0 ? lastOffset : `${this.storeId}:${++this.timerBatches}`;
    const args: (string | number)[] = [epoch, firstOffset, last, result.streamTime, result.states.size, result.timers.size, result.counters.size, -1];
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
    return { partition, firstOffset, lastOffset, keys, args };
  }

  /**
   * Sends a prepared commit (again, after a failure: the same arguments, with the fence this
   * store last saw acknowledged read anew).
   */
  async sendCommit(c: PreparedCommit): Promise<CommitOutcome> {
    const { partition, firstOffset, lastOffset } = c;
    c.args[SEEN_ARG] = this.seen.get(partition) ?? -1;
    const code = await (this.redis as unknown as CommitCommand).nudgeCommitBatch(c.keys.length, ...c.keys, ...c.args);
    if (code === 1) {
      if (firstOffset >= 0) this.see(partition, lastOffset);
      return 'committed';
    }
    if (code === -1) return 'stale-epoch';
    if (code === -3) {
      // Refused (nothing written), so the lane stops and abandons its in-flight work (a
      // lane that went on would apply the next offsets over the gap); the listener has the
      // partition claimed again. Reported after the lane has seen the refusal.
      if (!this.reported.has(partition)) {
        this.reported.add(partition);
        const seen = this.seen.get(partition) ?? -1;
        setImmediate(() => this.onStateLost?.(partition, seen));
      }
      return 'state-lost';
    }
    return 'already-applied';
  }
}
