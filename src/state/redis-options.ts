import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { RedisOptions } from 'ioredis';
import type { NudgeConfig } from '../config/schema.js';
import { ErrorCodes, NudgeError } from '../errors.js';

/** Longest wait between reconnection attempts. */
export const RECONNECT_MAX_DELAY_MS = 5_000;
const RECONNECT_BASE_DELAY_MS = 100;

/**
 * Arguments for `new Redis(url, options)` for every Nudge connection (engine, relay, BullMQ
 * queues and workers). Credentials are moved out of the URL into the options, so the URL can be
 * logged as is; ioredis lets URL fields win over options, so leaving them in both would be
 * ambiguous.
 *
 * Never sets ioredis `keyPrefix`: it is not applied to keys that Lua scripts build, nor
 * consistently by BullMQ, so Nudge builds every key itself in one module (STYLE habit 5);
 * `redis.keyPrefix` in the config is the namespace that module uses.
 */
export function ioredisOptions(redis: NudgeConfig['redis']): { url: string; options: RedisOptions } {
  const url = new URL(redis.url);
  const username = redis.username ?? (url.username ? decodeURIComponent(url.username) : undefined);
  const password = redis.password ?? (url.password ? decodeURIComponent(url.password) : undefined);
  url.username = '';
  url.password = '';

  const options: RedisOptions = {
    // BullMQ requires null for its blocking connections, and the engine wants the same: with
    // null a command issued while Redis is down waits for the reconnection instead of failing
    // after 20 retries. A down Redis must pause work (no offsets move, no touch is lost), not
    // drop a commit or an outbox write half-way. The commands waiting sit in ioredis' offline
    // queue, which has no bound of its own: callers must await their commands before taking
    // more input (the pipeline awaits each batch commit), which is what bounds it.
    maxRetriesPerRequest: null,
    // Wait for INFO to report the dataset loaded before "ready": commands sent to a Redis that
    // is still loading its AOF after a restart fail with LOADING.
    enableReadyCheck: true,
    retryStrategy: reconnectDelayMs,
    reconnectOnError,
  };
  if (username !== undefined) options.username = username;
  if (password !== undefined) options.password = password;
  if (url.protocol === 'rediss:') options.tls = tlsOptions(redis.tls);
  return { url: url.toString(), options };
}

/**
 * Capped exponential backoff with "equal jitter": 100 ms doubling up to 5 s, then a random
 * point in the upper half. Never gives up (no null): the process keeps trying while Redis is
 * away. The jitter spreads the reconnections of many engines and workers after a Redis restart.
 */
export function reconnectDelayMs(times: number, random: () => number = Math.random): number {
  const ceiling = Math.min(RECONNECT_MAX_DELAY_MS, RECONNECT_BASE_DELAY_MS * 2 ** Math.min(Math.max(times - 1, 0), 16));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * After a failover the old primary becomes a replica and answers writes with READONLY while the
 * DNS name moves on; reconnecting (2 = reconnect and resend the command) reaches the new
 * primary. Resending is safe: the commit script is fenced, so a repeat is a no-op.
 */
function reconnectOnError(err: Error): boolean | 1 | 2 {
  return err.message.startsWith('READONLY') ? 2 : false;
}

function tlsOptions(tls: NudgeConfig['redis']['tls']): ConnectionOptions {
  const options: ConnectionOptions = { rejectUnauthorized: tls?.rejectUnauthorized ?? true };
  if (tls?.caFile) options.ca = readPem(tls.caFile, 'redis.tls.caFile');
  if (tls?.certFile) options.cert = readPem(tls.certFile, 'redis.tls.certFile');
  if (tls?.keyFile) options.key = readPem(tls.keyFile, 'redis.tls.keyFile');
  if (tls?.servername) options.servername = tls.servername;
  return options;
}

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    // The loader checked the file; this is a file removed or re-permissioned since.
    throw new NudgeError(ErrorCodes.CONFIG_INVALID, `${field}: cannot read ${JSON.stringify(path)} (${(err as NodeJS.ErrnoException).code}); check the file and start again.`, {
      context: { field, path },
      cause: err,
    });
  }
}
