import type { Redis } from 'ioredis';
import { touchKeys, type TouchKeys } from './keys.js';
import { withTouchScripts } from './scripts.js';

export interface ChannelRate {
  /** Sends allowed per `durationMs` on the channel, across all workers. */
  max: number;
  durationMs: number;
}

/**
 * Per-channel send rates shared by every worker process. Open-source BullMQ has one limiter
 * per queue (per-group limits were removed in 3.0 and live in BullMQ Pro), and the contract
 * puts every channel on one queue, so channels are limited here: each attempt reserves a slot
 * (slots `durationMs / max` apart, no burst) and waits for it.
 */
export class ChannelRateLimiter {
  private readonly redis: ReturnType<typeof withTouchScripts>;
  private readonly keys: TouchKeys;

  constructor(
    redis: Redis,
    namespace: string,
    private readonly rates: ReadonlyMap<string, ChannelRate>,
  ) {
    this.redis = withTouchScripts(redis);
    this.keys = touchKeys(namespace);
    for (const [channel, r] of rates) {
      if (!(r.max >= 1) || !(r.durationMs >= 1)) throw new RangeError(`rate of channel ${channel} needs max ≥ 1 and durationMs ≥ 1, got ${r.max}/${r.durationMs}`);
    }
  }

  limits(channel: string): boolean {
    return this.rates.has(channel);
  }

  /**
   * Milliseconds until this attempt's slot (≤ 0: send now). Asking again for the same attempt
   * returns the same slot, so a job delayed until its slot does not queue up a second time.
   */
  async reserve(channel: string, touchId: string, attempt: number): Promise<number> {
    const rate = this.rates.get(channel);
    if (rate === undefined) return 0;
    const interval = Math.ceil(rate.durationMs / rate.max);
    return Number(await this.redis.nudgeReserveSendSlot(this.keys.rate(channel), this.keys.rateReservation(channel, touchId, attempt), interval, 60_000));
  }
}
