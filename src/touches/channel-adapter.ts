import type { ErrorCode } from '../errors.js';
import type { TouchJob } from './touch-job.js';

/**
 * What a provider made of one send:
 * - `ok`: accepted.
 * - `retry`: not delivered, may pass later (5xx, 429, timeout, network); `retryAfterMs` from the provider.
 * - `permanent`: refused for good (bad request, unknown device, redirect); not retried.
 * - `disable`: the destination is gone (410); the adapter stops sending to it.
 * `reason` is logged and shown in the failed-touch view: no personal data, no secrets, no URLs
 * with tokens in them. `code` overrides the error code of a failure.
 */
export type SendResult =
  | { kind: 'ok' }
  | { kind: 'retry'; reason: string; retryAfterMs?: number; code?: ErrorCode }
  | { kind: 'permanent'; reason: string; code?: ErrorCode }
  | { kind: 'disable'; reason: string };

/** One channel's provider. See docs/channels.md for how to add one (FCM, APNs, SMS). */
export interface ChannelAdapter {
  /** The channel it serves = `job.name` = `TouchJob.channel`. */
  readonly channel: string;
  /**
   * True when the provider deduplicates on the idempotency key the adapter sends (the touch
   * id): then a send whose outcome is unknown (the worker died mid-send) is sent again, and
   * the provider drops the copy. False: such a touch is recorded as ambiguous and not resent
   * (at most once).
   */
  readonly idempotent: boolean;
  /** Longest one `send` can take (its timeout); sizes the send lease. @default 30_000 */
  readonly maxSendMs?: number;
  /**
   * Sends one touch. Must honour `signal` (aborted on timeout or shutdown) and should not
   * throw: a throw counts as "outcome unknown" and the touch is retried under the lease rules.
   */
  send(job: TouchJob, signal: AbortSignal): Promise<SendResult>;
}

/** The policy gate at send time (DESIGN §4): the engine provides it; consent, caps, quiet hours. */
export type RecheckFn = (job: TouchJob) => Promise<{ send: boolean; reason: string }>;
