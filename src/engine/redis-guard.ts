import type { Redis } from 'ioredis';
import { ErrorCodes, NudgeError } from '../errors.js';

/**
 * Refuses a Redis that may evict keys: an evicted user state or fence silently breaks
 * exactly-once (BullMQ's production notes call `noeviction` "the only setting" too).
 * Reads `INFO memory` rather than `CONFIG GET`, which a least-privilege ACL user may lack.
 */
export async function assertRedisSafe(redis: Redis): Promise<void> {
  let info: string;
  try {
    info = await redis.info('memory');
  } catch (err) {
    if (!/^NOPERM/.test((err as Error).message)) throw err;
    throw new NudgeError(
      ErrorCodes.REDIS_UNSAFE,
      'the Redis user may not run INFO, which Nudge needs to check maxmemory-policy (and BullMQ to check the server version). ' +
        'Add +info to the ACL user (docs/security.md has the whole line), then start again.',
      { cause: err },
    );
  }
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

/**
 * The message for a first connection that failed. ioredis rejects `connect()` with "Connection
 * is closed" whatever the cause; the server's reason arrives as an `error` event before it. A
 * refused login (wrong password, a user that is off or missing) names the settings to check
 * rather than suggesting Redis is down. Redis' replies never quote the password.
 */
export function redisConnectMessage(url: string, err: Error, lastServerError: string): string {
  if (/^(WRONGPASS|NOAUTH|NOPERM)\b/.test(lastServerError)) {
    return (
      `Redis at ${url} refused the login (${lastServerError}). Check redis.username and redis.password ` +
      '(NUDGE_REDIS_USERNAME / NUDGE_REDIS_PASSWORD) and that the ACL user exists and is on; docs/security.md has the ACL line.'
    );
  }
  return `cannot reach Redis at ${url} (${err.message}). Start one (npm run services) or set REDIS_URL.`;
}
