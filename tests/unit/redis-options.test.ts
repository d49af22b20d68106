import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import type { NudgeConfig } from '../../src/config/schema.js';
import { RECONNECT_MAX_DELAY_MS, ioredisOptions, reconnectDelayMs } from '../../src/state/redis-options.js';
import { assertRedisSafe, redisConnectMessage } from '../../src/engine/redis-guard.js';

const dir = mkdtempSync(join(tmpdir(), 'nudge-redis-options-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let count = 0;
function redisConfig(lines: readonly string[], env: Record<string, string> = {}): NudgeConfig['redis'] {
  const file = join(dir, `nudge-${count++}.yaml`);
  writeFileSync(file, ['redis:', ...lines.map((l) => `  ${l}`)].join('\n') + '\n');
  return loadConfig({ file, env }).redis;
}

describe('ioredisOptions', () => {
  it('sets what BullMQ and a pausing engine need, and never keyPrefix', () => {
    const { url, options } = ioredisOptions(redisConfig([]));
    expect(url).toBe('redis://127.0.0.1:6379');
    expect(options).toMatchObject({ maxRetriesPerRequest: null, enableReadyCheck: true });
    expect(options.retryStrategy).toBe(reconnectDelayMs);
    expect(options).not.toHaveProperty('keyPrefix');
    expect(options).not.toHaveProperty('username');
    expect(options).not.toHaveProperty('password');
    expect(options).not.toHaveProperty('tls');
  });

  it('moves credentials out of the URL, so the URL can be logged', () => {
    const { url, options } = ioredisOptions(redisConfig(['url: "redis://engine:p%40ss@redis.internal:6380/2"']));
    expect(url).toBe('redis://redis.internal:6380/2');
    expect(options).toMatchObject({ username: 'engine', password: 'p@ss' });
  });

  it('passes the ACL user and password from the config', () => {
    const { options } = ioredisOptions(redisConfig(['username: engine', 'password: engine-pw']));
    expect(options).toMatchObject({ username: 'engine', password: 'engine-pw' });
  });

  it('turns on TLS for rediss://, verifying the server by default', () => {
    const { url, options } = ioredisOptions(redisConfig(['url: rediss://redis.internal:6380']));
    expect(url).toBe('rediss://redis.internal:6380');
    expect(options.tls).toEqual({ rejectUnauthorized: true });
  });

  it('reads the CA, certificate and key files and passes the TLS settings', () => {
    const files = { ca: 'CA PEM', cert: 'CERT PEM', key: 'KEY PEM' };
    for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, `${name}.pem`), body);
    const { options } = ioredisOptions(
      redisConfig([
        'url: rediss://10.0.0.5:6380',
        'tls:',
        `  caFile: ${join(dir, 'ca.pem')}`,
        `  certFile: ${join(dir, 'cert.pem')}`,
        `  keyFile: ${join(dir, 'key.pem')}`,
        '  rejectUnauthorized: false',
        '  servername: redis.internal',
      ]),
    );
    expect(options.tls).toEqual({
      rejectUnauthorized: false,
      ca: Buffer.from(files.ca),
      cert: Buffer.from(files.cert),
      key: Buffer.from(files.key),
      servername: 'redis.internal',
    });
  });

  it('gives ioredis the options as meant: URL fields and option fields merged, no key prefix', () => {
    const { url, options } = ioredisOptions(redisConfig(['url: "redis://:from-url@127.0.0.1:6390/3"']));
    // lazyConnect: nothing is contacted; this checks how ioredis itself reads the arguments.
    const client = new Redis(url, { ...options, lazyConnect: true });
    try {
      expect(client.options).toMatchObject({ host: '127.0.0.1', port: 6390, db: 3, password: 'from-url', maxRetriesPerRequest: null });
      expect(client.options.keyPrefix ?? '').toBe('');
    } finally {
      client.disconnect();
    }
  });
});

describe('reconnection', () => {
  it('backs off exponentially from 100 ms, capped at 5 s, with jitter in the upper half', () => {
    expect([1, 2, 3, 4].map((n) => reconnectDelayMs(n, () => 1))).toEqual([100, 200, 400, 800]);
    expect([1, 2, 3, 4].map((n) => reconnectDelayMs(n, () => 0))).toEqual([50, 100, 200, 400]);
    expect(reconnectDelayMs(7, () => 1)).toBe(RECONNECT_MAX_DELAY_MS);
    expect(reconnectDelayMs(1_000_000, () => 0)).toBe(RECONNECT_MAX_DELAY_MS / 2);
  });

  it('never gives up (no null), so a down Redis pauses work rather than failing it', () => {
    for (let times = 1; times < 200; times++) {
      const delay = reconnectDelayMs(times);
      expect(delay).toBeGreaterThan(0);
      expect(delay).toBeLessThanOrEqual(RECONNECT_MAX_DELAY_MS);
    }
  });

  it('reconnects and resends after READONLY (a failover), not after other errors', () => {
    const { options } = ioredisOptions(redisConfig([]));
    const onError = options.reconnectOnError!;
    expect(onError(new Error("READONLY You can't write against a read only replica."))).toBe(2);
    expect(onError(new Error('NOPERM this user has no permissions'))).toBe(false);
  });
});

describe('against the real Redis of the test run', () => {
  it('logs in as a least-privilege ACL user given by the environment, and refuses a wrong password', async () => {
    const redisUrl = inject('redisUrl');
    const admin = new Redis(redisUrl);
    const user = `nudge-test-${process.pid}-${randomBytes(4).toString('hex')}`;
    const password = randomBytes(16).toString('hex');
    const prefix = `${user}:`;
    // Only its own keys, no dangerous commands (FLUSHALL, CONFIG, KEYS...), as in
    // the shared research brief reliability.md §5.4. INFO is @dangerous but needed back: the ready check (and BullMQ)
    // run it, and without it ioredis skips the check with a warning.
    await admin.call('ACL', 'SETUSER', user, 'on', `>${password}`, `~${prefix}*`, '+@all', '-@dangerous', '+info');
    const clients: Redis[] = [];
    try {
      const env = { NUDGE_REDIS_URL: redisUrl, NUDGE_REDIS_USERNAME: user, NUDGE_REDIS_PASSWORD: password };
      const { url, options } = ioredisOptions(loadConfig({ defaultsOnly: true, env }).redis);
      const engine = new Redis(url, options);
      clients.push(engine);
      expect(await engine.set(`${prefix}k`, 'v')).toBe('OK');
      await expect(engine.get('someone-else:k')).rejects.toThrow(/NOPERM/);
      await expect(engine.flushall()).rejects.toThrow(/NOPERM/);

      // No retries here: with the production strategy a failed login would be retried forever.
      const wrong = new Redis(url, { ...options, password: 'wrong', lazyConnect: true, retryStrategy: () => null });
      clients.push(wrong);
      const errors: Error[] = [];
      wrong.on('error', (err: Error) => errors.push(err));
      await expect(wrong.connect()).rejects.toThrow();
      expect(errors.map((e) => e.message).join('\n')).toMatch(/^WRONGPASS/);
    } finally {
      for (const client of clients) client.disconnect();
      await admin.del(`${prefix}k`);
      await admin.call('ACL', 'DELUSER', user);
      await admin.quit();
    }
  });
});

describe('start-up guard under a least-privilege user', () => {
  it('reads maxmemory-policy with INFO (no CONFIG rights needed), and without +info says what to add', async () => {
    const redisUrl = inject('redisUrl');
    const admin = new Redis(redisUrl);
    const base = `nudge-guard-${process.pid}-${randomBytes(4).toString('hex')}`;
    const password = randomBytes(16).toString('hex');
    const clients: Redis[] = [];
    try {
      // Both without CONFIG (in @dangerous); the second without INFO either.
      await admin.call('ACL', 'SETUSER', `${base}-a`, 'on', `>${password}`, `~${base}:*`, '-@all', '+@read', '+@write', '+@connection', '+info');
      await admin.call('ACL', 'SETUSER', `${base}-b`, 'on', `>${password}`, `~${base}:*`, '-@all', '+@read', '+@write', '+@connection');
      const as = (user: string) => {
        const c = new Redis(redisUrl, { username: user, password, enableReadyCheck: false, retryStrategy: () => null });
        clients.push(c);
        return c;
      };
      await expect(as(`${base}-a`).config('GET', 'maxmemory-policy')).rejects.toThrow(/NOPERM/);
      await expect(assertRedisSafe(as(`${base}-a`))).resolves.toBeUndefined();
      await expect(assertRedisSafe(as(`${base}-b`))).rejects.toThrow(/Add \+info to the ACL user/);
    } finally {
      for (const c of clients) c.disconnect();
      for (const u of ['a', 'b']) await admin.call('ACL', 'DELUSER', `${base}-${u}`);
      await admin.quit();
    }
  });

  it('tells a refused login from a Redis that is down', () => {
    const closed = new Error('Connection is closed.');
    expect(redisConnectMessage('redis://r:6379', closed, 'WRONGPASS invalid username-password pair or user is disabled.')).toMatch(
      /^Redis at redis:\/\/r:6379 refused the login \(WRONGPASS .*\)\. Check redis\.username and redis\.password \(NUDGE_REDIS_USERNAME \/ NUDGE_REDIS_PASSWORD\)/,
    );
    expect(redisConnectMessage('redis://r:6379', closed, '')).toBe('cannot reach Redis at redis://r:6379 (Connection is closed.). Start one (npm run services) or set REDIS_URL.');
    expect(redisConnectMessage('redis://r:6379', closed, 'connect ECONNREFUSED 10.0.0.1:6379')).toMatch(/^cannot reach Redis/);
  });
});
