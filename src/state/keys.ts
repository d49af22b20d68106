/**
 * Every Redis key Nudge writes is built here (STYLE.md habit 5; never ioredis `keyPrefix`).
 *
 * Keys of one lane (one partition of the events topic) share a Redis Cluster hash tag, so the
 * commit script that writes a batch's states, counters, timers and fence touches one slot.
 * The tag holds the namespace, the topic and the partition:
 *   {nudge:nudge.events:3}:u:<userId>      one user's state (JSON)
 *   {nudge:nudge.events:3}:fence           epoch, last applied offset, stream time
 *   {nudge:nudge.events:3}:timers          due times of the lane's users (sorted set)
 *   {nudge:nudge.events:3}:outbox          touches decided, not yet in BullMQ (named in touches/keys.ts)
 *   {nudge:nudge.events:3}:a:active:dau    activity counts of the lane, field = period
 * and keys outside any lane:
 *   nudge:nudge.events:lanes               the partitions that ever had state (a set)
 *   {nudge:nudge.events:d:<name>/<device hash>}   one device's sign-ups (a sorted set; its own slot)
 */
import { outboxKey } from '../touches/keys.js';

export interface LaneKeys {
  tag: string;
  fence: string;
  timers: string;
  /** Touches decided and not yet relayed to BullMQ (the touches layer names and drains it). */
  outbox: string;
  user(userId: string): string;
  hash(suffix: string): string;
}

export function laneKeys(namespace: string, topic: string, partition: number): LaneKeys {
  const tag = `{${namespace}:${topic}:${partition}}`;
  return {
    tag,
    fence: `${tag}:fence`,
    timers: `${tag}:timers`,
    outbox: outboxKey(tag),
    user: (userId) => `${tag}:u:${userId}`,
    hash: (suffix) => `${tag}:${suffix}`,
  };
}

/** One device's sign-ups of one behaviour.deviceSignups definition; `set` = deviceSetId(). */
export function deviceSignupsKey(namespace: string, topic: string, set: string): string {
  return `{${namespace}:${topic}:d:${set}}`;
}

export function lanesKey(namespace: string, topic: string): string {
  return `${namespace}:${topic}:lanes`;
}
