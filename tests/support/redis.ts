import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

export interface TestRedis {
  client: Redis;
  /** Unique to this call; every key a test writes must start with it. */
  prefix: string;
  /** Deletes every key under `prefix`, then closes the client. */
  cleanup(): Promise<void>;
}

/**
 * A Redis client and a private key prefix for one test. Tests share one Redis (and, with
 * REDIS_URL, maybe someone else's), so cleanup deletes only this prefix, never FLUSHDB.
 */
export function testRedis(url: string): TestRedis {
  const client = new Redis(url);
  const prefix = `nudge-test:${process.pid}-${randomBytes(4).toString('hex')}:`;
  return {
    client,
    prefix,
    async cleanup() {
      // SCAN instead of KEYS: it never blocks the server that other workers are using.
      let cursor = '0';
      do {
        const [next, keys] = await client.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', 1000);
        if (keys.length > 0) await client.unlink(...keys);
        cursor = next;
      } while (cursor !== '0');
      await client.quit();
    },
  };
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
