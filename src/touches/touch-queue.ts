import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { TOUCH_BACKOFF_TYPE } from './backoff.js';
import type { TouchJob } from './touch-job.js';

/** The queue name of the contract (DESIGN §2.2). */
export const DEFAULT_TOUCH_QUEUE = 'nudge-touches';

export interface TouchQueueOptions {
  connection: Redis;
  /** @default 'nudge-touches' */
  name?: string;
  /** BullMQ's key prefix. On Redis Cluster give it a hash tag (`{bull}`): BullMQ's scripts touch many keys. @default 'bull' */
  prefix?: string;
}

export type TouchQueue = Queue<TouchJob, unknown, string>;

export function openTouchQueue(o: TouchQueueOptions): TouchQueue {
  return new Queue<TouchJob, unknown, string>(o.name ?? DEFAULT_TOUCH_QUEUE, {
    connection: o.connection,
    ...(o.prefix === undefined ? {} : { prefix: o.prefix }),
  });
}

export interface TouchJobPolicy {
  /** Attempts per touch, the first included. @default 10 */
  attempts?: number;
  /**
   * How long a completed job is kept. While it exists, adding its touch id again is a no-op
   * (BullMQ `handleDuplicatedJob`), which is what makes a relay re-add after a crash harmless.
   * By age only: a `count` limit would shorten this window silently under load. @default 7 days
   */
  keepCompletedSeconds?: number;
  /** How long a failed job is kept, for the failed-touch view and manual retries. @default 30 days */
  keepFailedSeconds?: number;
}

export const TOUCH_JOB_POLICY_DEFAULTS: Required<TouchJobPolicy> = {
  attempts: 10,
  keepCompletedSeconds: 7 * 86_400,
  keepFailedSeconds: 30 * 86_400,
};

export interface TouchJobEntry {
  name: string;
  data: TouchJob;
  opts: JobsOptions;
}

/**
 * The BullMQ job for a touch: name = channel, id = touch id, a delay when `sendAt` is still
 * ahead at enqueue time (a touch relayed late is not delayed again), retries with the touch
 * backoff, retention by age.
 */
export function touchJobEntry(job: TouchJob, now: number, policy: TouchJobPolicy = {}): TouchJobEntry {
  const p = { ...TOUCH_JOB_POLICY_DEFAULTS, ...policy };
  const delay = job.sendAt - now;
  return {
    name: job.channel,
    data: job,
    opts: {
      jobId: job.touchId,
      ...(delay > 0 ? { delay } : {}),
      attempts: p.attempts,
      backoff: { type: TOUCH_BACKOFF_TYPE },
      removeOnComplete: { age: p.keepCompletedSeconds },
      removeOnFail: { age: p.keepFailedSeconds },
    },
  };
}
