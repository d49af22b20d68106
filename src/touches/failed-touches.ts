import type { Queue } from 'bullmq';
import { errorCodeOf } from './job-errors.js';

/** A failed touch as operators see it: ids and codes, no personal data (no user id, no attributes). */
export interface FailedTouch {
  touchId: string;
  channel: string;
  journeyId: string;
  stepId: string;
  /** Attempts made, the last included. */
  attempts: number;
  /** The `NUDGE_…` code of the last failure (`UNKNOWN` for an error without one). */
  errorCode: string;
  /** When it failed for good (ms since the epoch). */
  failedAt: number | null;
}

/**
 * The failed-touch view, newest first. Retrying one is BullMQ's `job.retry()` (the ledger still
 * prevents a second send of a touch that did reach its provider).
 */
export async function listFailedTouches(queue: Queue, range: { start?: number; end?: number } = {}): Promise<FailedTouch[]> {
  const jobs = await queue.getFailed(range.start ?? 0, range.end ?? 99);
  return jobs.flatMap((job) => {
    if (job === undefined || job === null) return [];
    const data = (job.data ?? {}) as Partial<Record<'journeyId' | 'stepId', unknown>>;
    return [{
      touchId: String(job.id),
      channel: job.name,
      journeyId: typeof data.journeyId === 'string' ? data.journeyId : '',
      stepId: typeof data.stepId === 'string' ? data.stepId : '',
      attempts: job.attemptsMade,
      errorCode: errorCodeOf(job.failedReason),
      failedAt: job.finishedOn ?? null,
    }];
  });
}
