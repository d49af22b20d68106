import { DelayedError } from 'bullmq';
import { ErrorCodes, describeError, isNudgeError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { ChannelAdapter, RecheckFn, SendResult } from './channel-adapter.js';
import type { ChannelPermits } from './channel-permits.js';
import type { ChannelRateLimiter } from './channel-rate-limiter.js';
import { RetriableTouchError, permanentTouchError } from './job-errors.js';
import type { SendLedger } from './send-ledger.js';
import { validateTouchJob, type TouchJob } from './touch-job.js';
import type { TouchMetrics } from './touch-metrics.js';

/** What a completed touch job returns (stored by BullMQ as the job's return value). */
export interface TouchOutcome {
  outcome: 'sent' | 'duplicate' | 'suppressed' | 'ambiguous';
  reason?: string;
}

/** The part of a BullMQ `Job` the processor uses; a real `Job` fits. */
export interface TouchJobHandle {
  id?: string | undefined;
  name: string;
  data: unknown;
  attemptsMade: number;
  moveToDelayed(timestamp: number, token?: string): Promise<void>;
}

export interface TouchProcessorDeps {
  adapters: ReadonlyMap<string, ChannelAdapter>;
  ledger: SendLedger;
  limiter: ChannelRateLimiter;
  /** Per-channel concurrency in this process; a channel without an entry is bounded only by the worker. */
  permits: ReadonlyMap<string, ChannelPermits>;
  recheck: RecheckFn;
  /** Added to an adapter's `maxSendMs` for the send lease (Redis round trips, GC pauses). */
  leaseMarginMs: number;
  /** A rate-limit wait up to this long is slept in process; longer ones make the job delayed. */
  maxInlineWaitMs: number;
  logger?: Logger;
  metrics?: TouchMetrics;
  clock?: () => number;
}

/**
 * One touch job, start to end: contract check, ledger check, channel slot (concurrency, rate),
 * policy re-check, send lease, provider call, ledger update. BullMQ calls `process` for every
 * run of a job — first runs, retries and stalled re-runs alike — so every step is safe to
 * repeat; the ledger is what makes the provider call happen once.
 */
export class TouchProcessor {
  private readonly log: Logger;
  private readonly clock: () => number;

  constructor(private readonly d: TouchProcessorDeps) {
    this.log = d.logger ?? silentLogger();
    this.clock = d.clock ?? Date.now;
  }

  async process(job: TouchJobHandle, token?: string, signal: AbortSignal = new AbortController().signal): Promise<TouchOutcome> {
    const touch = this.checked(job);
    const adapter = this.d.adapters.get(touch.channel);
    if (adapter === undefined) {
      this.d.metrics?.delivery(touch.channel, 'invalid');
      throw permanentTouchError(ErrorCodes.TOUCH_NO_ADAPTER, `no adapter is configured for channel ${JSON.stringify(touch.channel.slice(0, 64))}; configure one, then retry the failed job`);
    }
    if (await this.d.ledger.isSent(touch.touchId)) return this.finish(touch, 'duplicate');

    const permits = this.d.permits.get(touch.channel);
    await permits?.acquire();
    try {
      const wait = await this.d.limiter.reserve(touch.channel, touch.touchId, job.attemptsMade);
      if (wait > this.d.maxInlineWaitMs) {
        // Out of the worker's slots until the channel's slot comes; it keeps the reservation.
        await job.moveToDelayed(this.clock() + wait, token);
        throw new DelayedError();
      }
      if (wait > 0) await sleep(wait, signal);

      let decision: { send: boolean; reason: string };
      try {
        decision = await this.d.recheck(touch);
      } catch (err) {
        // The error's kind only: a JSON.parse failure on a stored state quotes the state, traits
        // included, and this text becomes the job's failedReason.
        const kind = isNudgeError(err) ? err.code : err instanceof Error ? err.name : 'error';
        this.log.warn({ ...this.fields(touch, job), kind }, 'send-time re-check could not read the user state (Redis?); retrying with backoff');
        throw new RetriableTouchError(ErrorCodes.TOUCH_DELIVERY_RETRY, `policy re-check failed (${kind}); retried with backoff`);
      }
      if (!decision.send) return this.finish(touch, 'suppressed', decision.reason);

      const lease = await this.d.ledger.begin(touch.touchId, (adapter.maxSendMs ?? 30_000) + this.d.leaseMarginMs);
      if (lease.kind === 'sent') return this.finish(touch, 'duplicate');
      if (lease.kind === 'ambiguous') return this.finish(touch, 'ambiguous', 'an earlier attempt died mid-send');
      if (lease.kind === 'busy') {
        this.d.metrics?.delivery(touch.channel, 'busy');
        throw new RetriableTouchError(ErrorCodes.TOUCH_SEND_IN_PROGRESS, 'another attempt of this touch is sending; trying again later');
      }
      if (lease.takeover && !adapter.idempotent) {
        // The previous attempt's lease ran out mid-send: it may have reached the provider, which
        // cannot deduplicate. At most once: record and do not resend.
        await this.d.ledger.markAmbiguous(touch.touchId, this.clock());
        return this.finish(touch, 'ambiguous', 'an earlier attempt died mid-send and the channel cannot deduplicate');
      }
      if (lease.takeover) this.log.info(this.fields(touch, job), 'an earlier attempt died mid-send; sending again with the same idempotency key');

      let result: SendResult;
      try {
        result = await adapter.send(touch, signal);
      } catch (err) {
        // Outcome unknown: keep the lease, so the next attempt goes through the takeover rules.
        this.d.metrics?.delivery(touch.channel, 'retry');
        throw new RetriableTouchError(ErrorCodes.TOUCH_DELIVERY_RETRY, `adapter failed: ${describeError(err).slice(0, 200)}`);
      }
      return await this.settle(touch, job, lease.lease, result);
    } finally {
      permits?.release();
    }
  }

  private async settle(touch: TouchJob, job: TouchJobHandle, lease: string, result: SendResult): Promise<TouchOutcome> {
    const m = this.d.metrics;
    if (result.kind === 'ok') {
      const now = this.clock();
      await this.d.ledger.markSent(touch.touchId, now);
      m?.eventToDelivery.observe({ channel: m.channel(touch.channel) }, Math.max(0, now - Math.max(touch.triggeredAt, touch.sendAt)) / 1000);
      return this.finish(touch, 'sent');
    }
    await this.d.ledger.release(touch.touchId, lease);
    const fields = { ...this.fields(touch, job), reason: result.reason };
    if (result.kind === 'retry') {
      m?.delivery(touch.channel, 'retry');
      this.log.info(fields, 'touch not delivered; will retry');
      throw new RetriableTouchError(result.code ?? ErrorCodes.TOUCH_DELIVERY_RETRY, result.reason, result.retryAfterMs);
    }
    if (result.kind === 'disable') {
      m?.delivery(touch.channel, 'disabled');
      this.log.warn(fields, 'touch not delivered: endpoint disabled');
      throw permanentTouchError(ErrorCodes.TOUCH_ENDPOINT_DISABLED, result.reason);
    }
    m?.delivery(touch.channel, 'rejected');
    this.log.warn(fields, 'touch rejected; not retried');
    throw permanentTouchError(result.code ?? ErrorCodes.TOUCH_DELIVERY_REJECTED, result.reason);
  }

  private checked(job: TouchJobHandle): TouchJob {
    const c = validateTouchJob(job.data);
    const problem = !c.ok ? c.reason : c.job.channel !== job.name ? 'job name differs from data.channel' : c.job.touchId !== job.id ? 'job id differs from data.touchId' : undefined;
    if (problem !== undefined || !c.ok) {
      this.d.metrics?.delivery(job.name, 'invalid');
      throw permanentTouchError(ErrorCodes.TOUCH_INVALID, `job does not match the touch job contract: ${problem ?? 'invalid'}`);
    }
    return c.job;
  }

  private finish(touch: TouchJob, outcome: TouchOutcome['outcome'], reason?: string): TouchOutcome {
    this.d.metrics?.delivery(touch.channel, outcome);
    const fields = { touchId: touch.touchId, channel: touch.channel, journeyId: touch.journeyId, stepId: touch.stepId, outcome, ...(reason === undefined ? {} : { reason }) };
    if (outcome === 'ambiguous') this.log.warn(fields, 'touch not sent: outcome of an earlier attempt unknown');
    else this.log.debug(fields, 'touch done');
    return reason === undefined ? { outcome } : { outcome, reason };
  }

  private fields(touch: TouchJob, job: TouchJobHandle): Record<string, unknown> {
    return { touchId: touch.touchId, channel: touch.channel, journeyId: touch.journeyId, stepId: touch.stepId, attempt: job.attemptsMade + 1 };
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    function onAbort(): void {
      clearTimeout(timer);
      reject(signal.reason);
    }
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
