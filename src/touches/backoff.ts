/**
 * Retry delays for touch jobs: exponential with jitter, never sooner than a provider's
 * Retry-After. Registered on the worker as BullMQ's custom `backoffStrategy`; jobs carry
 * `backoff: { type: TOUCH_BACKOFF_TYPE }` (set by the relay).
 */
export const TOUCH_BACKOFF_TYPE = 'nudge-touch';

export interface BackoffOptions {
  /** Delay before the first retry, before jitter. @default 5_000 */
  initialMs?: number;
  /** Upper bound of any delay, before Retry-After. @default 6 h */
  maxMs?: number;
  /**
   * Share of the delay that is random, 0..1: the delay is uniform in [d·(1−jitter), d]. 1 is
   * "full jitter" (retries of a herd spread evenly), 0 none. @default 0.5
   */
  jitter?: number;
  /** A Retry-After beyond this is capped (a provider asking for a day is waited on by a failure). @default 1 h */
  maxRetryAfterMs?: number;
}

export const BACKOFF_DEFAULTS: Required<BackoffOptions> = {
  initialMs: 5_000,
  maxMs: 6 * 3_600_000,
  jitter: 0.5,
  maxRetryAfterMs: 3_600_000,
};

/**
 * The delay before retry number `attempt` (1 = the first retry). With the defaults the
 * envelope is 5 s, 10 s, 20 s, ... reaching 6 h at the 13th retry: a schedule over days, as the
 * Standard Webhooks spec recommends, when `attempts` is set high enough.
 */
export function retryDelayMs(attempt: number, options: BackoffOptions = {}, retryAfterMs?: number, random: () => number = Math.random): number {
  const o = { ...BACKOFF_DEFAULTS, ...options };
  const n = Math.max(1, Math.floor(attempt));
  // 2^(n-1) overflows to Infinity for large n; min() keeps it at maxMs.
  const envelope = Math.min(o.maxMs, o.initialMs * 2 ** (n - 1));
  const jitter = Math.min(1, Math.max(0, o.jitter));
  const delay = Math.round(envelope * (1 - jitter) + random() * envelope * jitter);
  const floor = retryAfterMs !== undefined && retryAfterMs > 0 ? Math.min(retryAfterMs, o.maxRetryAfterMs) : 0;
  return Math.max(delay, floor);
}

/** The error field a failed attempt uses to carry a provider's Retry-After to the strategy. */
export interface RetryAfterCarrier {
  retryAfterMs?: number;
}

/** A BullMQ `settings.backoffStrategy` for `TOUCH_BACKOFF_TYPE`. */
export function touchBackoffStrategy(options: BackoffOptions = {}, random: () => number = Math.random) {
  return (attemptsMade: number, _type?: string, err?: Error): number => {
    const retryAfter = (err as (Error & RetryAfterCarrier) | undefined)?.retryAfterMs;
    return retryDelayMs(attemptsMade, options, typeof retryAfter === 'number' ? retryAfter : undefined, random);
  };
}
