import { UnrecoverableError } from 'bullmq';
import type { ErrorCode } from '../errors.js';
import type { RetryAfterCarrier } from './backoff.js';

/**
 * Errors a touch job fails with. BullMQ stores only `err.message` as the failed reason, so the
 * message starts with the stable code (`NUDGE_TOUCH_…: reason`), which `errorCodeOf` reads back
 * for the failed-touch view. Reasons carry no personal data.
 */
export class RetriableTouchError extends Error implements RetryAfterCarrier {
  readonly retryAfterMs?: number;

  constructor(
    readonly code: ErrorCode,
    reason: string,
    retryAfterMs?: number,
  ) {
    super(`${code}: ${reason}`);
    this.name = 'RetriableTouchError';
    if (retryAfterMs !== undefined) this.retryAfterMs = retryAfterMs;
  }
}

/** A failure BullMQ must not retry (it checks for UnrecoverableError). */
export function permanentTouchError(code: ErrorCode, reason: string): UnrecoverableError {
  return new UnrecoverableError(`${code}: ${reason}`);
}

/** The `NUDGE_…` code at the start of a failed reason, or `UNKNOWN`. */
export function errorCodeOf(failedReason: string | undefined): string {
  const m = /^(NUDGE_[A-Z_]+):/.exec(failedReason ?? '');
  return m?.[1] ?? 'UNKNOWN';
}
