import type { Redis } from 'ioredis';
import { ErrorCodes, NudgeError } from '../errors.js';

/**
 * Refuses a Redis that may evict keys: an evicted user state or fence silently breaks
 * exactly-once (BullMQ's production notes call `noeviction` "the only setting" too).
 * Reads `INFO memory` rather than `CONFIG GET`, which a least-privilege ACL user may lack.
 */
export async function assertRedisSafe(redis: Redis): Promise<void> {
  const info = await redis.info('memory');
  const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
  if (policy !== 'noeviction') {
    throw new NudgeError(
      ErrorCodes.REDIS_UNSAFE,
      `Redis maxmemory-policy is "${policy ?? 'unknown'}"; Nudge needs "noeviction", because an evicted user state or lane fence would silently lose or double-count events. ` +
        'Run CONFIG SET maxmemory-policy noeviction (and set it in redis.conf), then start again.',
      { context: { policy } },
    );
  }
}
