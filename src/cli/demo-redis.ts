import { Redis } from 'ioredis';
import type { NudgeConfig } from '../config/schema.js';
import { startRedisServer, type RedisServerHandle } from '../dev/redis-server.js';
import { assertRedisSafe } from '../engine/redis-guard.js';
import { describeError, ErrorCodes, NudgeError } from '../errors.js';
import { ioredisOptions } from '../state/redis-options.js';

export interface DemoRedis {
  /** The URL the demo's engine uses. */
  url: string;
  /** The private redis-server the demo started, or null when it uses one that was running. */
  server: RedisServerHandle | null;
  /** One line for the terminal: which Redis, and why. */
  note: string;
  /** Stops the private server (a no-op for one that was running). */
  stop(): Promise<void>;
}

/** What a newcomer without Redis is told (DESIGN §2.5: "says how to get one"). */
export const HOW_TO_GET_REDIS = [
  'Install Redis, then run npm start again:',
  '  Debian/Ubuntu:  sudo apt-get install redis-server',
  '  Fedora/RHEL:    sudo dnf install redis',
  '  macOS:          brew install redis',
  '  others:         https://redis.io/docs/latest/operate/oss_and_stack/install/',
  'The demo starts redis-server itself (private, in a temp dir, stopped at the end); it only has to be on the PATH.',
  'Or point the demo at a Redis you run: REDIS_URL=redis://HOST:6379 npm start',
].join('\n');

/**
 * The demo's Redis (DESIGN §2.5): the configured one when it answers and is safe to use
 * (`noeviction`), else a private `redis-server` from the PATH on a free port in a temp dir.
 * With neither, a NudgeError that says how to install one.
 */
export async function findOrStartRedis(config: NudgeConfig, probeTimeoutMs = 1_500): Promise<DemoRedis> {
  const configured = redactUrl(config.redis.url);
  const problem = await probe(config, probeTimeoutMs);
  if (problem === null) {
    return { url: config.redis.url, server: null, note: `redis: using the Redis at ${configured}`, stop: async () => {} };
  }
  let server: RedisServerHandle;
  try {
    server = await startRedisServer();
  } catch (err) {
    const missing = (err as { cause?: NodeJS.ErrnoException }).cause?.code === 'ENOENT';
    throw new NudgeError(
      ErrorCodes.SERVICE_START,
      missing
        ? `no Redis answers at ${configured} (${problem}), and there is no redis-server on the PATH to start a private one.\n${HOW_TO_GET_REDIS}`
        : `no Redis answers at ${configured} (${problem}), and a private redis-server did not start: ${describeError(err)}`,
      { cause: err },
    );
  }
  return {
    url: server.url,
    server,
    note: `redis: none usable at ${configured} (${problem}); started a private redis-server on ${server.url} (pid ${server.pid}, data in ${server.dir}, removed at exit)`,
    stop: () => server.stop(),
  };
}

/** null when the configured Redis answers and keeps every key (noeviction); else why not. */
async function probe(config: NudgeConfig, timeoutMs: number): Promise<string | null> {
  const { url, options } = ioredisOptions(config.redis);
  const redis = new Redis(url, {
    ...options,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  // The socket's error (ECONNREFUSED...) says more than the rejected connect ("Connection is closed.").
  let socketError: Error | undefined;
  redis.on('error', (err: Error) => (socketError ??= err));
  try {
    await redis.connect();
    await assertRedisSafe(redis);
    return null;
  } catch (err) {
    const message = socketError?.message || describeError(err);
    return message.includes('maxmemory-policy') ? `its maxmemory-policy is not noeviction` : message.split('\n')[0] || 'no answer';
  } finally {
    redis.disconnect();
  }
}

function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
