import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { describeError, isNudgeError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { touchBackoffStrategy, type BackoffOptions } from './backoff.js';
import type { ChannelAdapter, RecheckFn } from './channel-adapter.js';
import { ChannelPermits } from './channel-permits.js';
import { ChannelRateLimiter, type ChannelRate } from './channel-rate-limiter.js';
import { SendLedger } from './send-ledger.js';
import type { TouchJob } from './touch-job.js';
import type { TouchMetrics } from './touch-metrics.js';
import { TouchProcessor, type TouchOutcome } from './touch-processor.js';
import { RetriableTouchError } from './job-errors.js';
import { DEFAULT_TOUCH_QUEUE, TOUCH_JOB_POLICY_DEFAULTS } from './touch-queue.js';

export interface ChannelSettings {
  /** Sends of this channel at once in this process. @default 8 */
  concurrency?: number;
  /** Sends per window across all workers; none = unlimited. */
  rate?: ChannelRate;
}

export interface TouchWorkerOptions {
  /** A client with `maxRetriesPerRequest: null` (BullMQ workers need it); also used for the ledger. */
  connection: Redis;
  /** @default 'nudge-touches' */
  queueName?: string;
  /** BullMQ key prefix. @default 'bull' */
  prefix?: string;
  /** Namespace of the ledger, rate and disabled-endpoint keys (`<namespace>:touches:…`). */
  namespace: string;
  adapters: readonly ChannelAdapter[];
  /** Per channel; a channel with an adapter and no entry gets the defaults. */
  channels?: Readonly<Record<string, ChannelSettings>>;
  /** The send-time policy gate. @default always send */
  recheck?: RecheckFn;
  backoff?: BackoffOptions;
  /** How long the ledger remembers a sent touch; longer than completed jobs are kept. @default 8 days */
  ledgerTtlMs?: number;
  /** @default 5_000 */
  leaseMarginMs?: number;
  /** @default 250 */
  maxInlineWaitMs?: number;
  /** BullMQ lock; a job whose lock is not renewed in time is re-run (stalled). @default 30_000 */
  lockDurationMs?: number;
  /** @default 30_000 */
  stalledIntervalMs?: number;
  logger?: Logger;
  metrics?: TouchMetrics;
  /** Start processing at once. @default true */
  autorun?: boolean;
}

const DEFAULT_CONCURRENCY = 8;
const MAX_WORKER_CONCURRENCY = 512;

/**
 * Delivery workers for the touch queue (DESIGN §2.2): one BullMQ Worker whose concurrency is the
 * sum of the channels' concurrencies, with per-channel concurrency (in process) and rates
 * (across processes) enforced by the processor, because open-source BullMQ limits per queue only
 * and the contract keeps every channel on one queue. Retries use the touch backoff
 * (exponential, jitter, Retry-After); the send ledger keeps re-runs from sending twice.
 *
 * Trade-off: a job waiting for its channel's permit holds one of the worker's slots. Slots are
 * the sum of all channels' permits, so a slow channel can delay others by at most the time its
 * own sends take (bounded by the adapter timeout); waits for a rate slot longer than
 * `maxInlineWaitMs` leave the worker as delayed jobs.
 */
export class TouchWorker {
  readonly worker: Worker<TouchJob, TouchOutcome, string>;
  readonly processor: TouchProcessor;
  private readonly log: Logger;
  private readonly closing = new AbortController();

  constructor(o: TouchWorkerOptions) {
    this.log = o.logger ?? silentLogger();
    const adapters = new Map(o.adapters.map((a) => [a.channel, a]));
    if (adapters.size !== o.adapters.length) throw new RangeError('two adapters serve the same channel');
    const permits = new Map<string, ChannelPermits>();
    const rates = new Map<string, ChannelRate>();
    for (const channel of adapters.keys()) {
      const s = o.channels?.[channel] ?? {};
      permits.set(channel, new ChannelPermits(s.concurrency ?? DEFAULT_CONCURRENCY));
      if (s.rate !== undefined) rates.set(channel, s.rate);
    }
    for (const channel of Object.keys(o.channels ?? {})) {
      if (!adapters.has(channel)) this.log.warn({ channel }, 'channel settings given for a channel without an adapter; they have no effect');
    }
    const ledgerTtlMs = o.ledgerTtlMs ?? 8 * 86_400_000;
    if (ledgerTtlMs < TOUCH_JOB_POLICY_DEFAULTS.keepCompletedSeconds * 1000) {
      this.log.warn({ ledgerTtlMs }, 'the send ledger forgets touches before BullMQ forgets their jobs; a late re-add could send twice');
    }
    this.processor = new TouchProcessor({
      adapters,
      ledger: new SendLedger(o.connection, o.namespace, ledgerTtlMs),
      limiter: new ChannelRateLimiter(o.connection, o.namespace, rates),
      permits,
      recheck: o.recheck ?? (async () => ({ send: true, reason: 'no-recheck' })),
      leaseMarginMs: o.leaseMarginMs ?? 5_000,
      maxInlineWaitMs: o.maxInlineWaitMs ?? 250,
      logger: this.log,
      ...(o.metrics === undefined ? {} : { metrics: o.metrics }),
    });
    const concurrency = Math.min(MAX_WORKER_CONCURRENCY, [...permits.values()].reduce((n, p) => n + p.permits, 0));
    this.worker = new Worker<TouchJob, TouchOutcome, string>(
      o.queueName ?? DEFAULT_TOUCH_QUEUE,
      (job: Job<TouchJob, TouchOutcome, string>, token?: string) => this.processor.process(job, token, this.closing.signal),
      {
        connection: o.connection,
        ...(o.prefix === undefined ? {} : { prefix: o.prefix }),
        concurrency: Math.max(1, concurrency),
        autorun: o.autorun ?? true,
        lockDuration: o.lockDurationMs ?? 30_000,
        stalledInterval: o.stalledIntervalMs ?? 30_000,
        settings: { backoffStrategy: touchBackoffStrategy(o.backoff) },
      },
    );
    this.worker.on('stalled', (jobId) => {
      o.metrics?.stalled.inc();
      this.log.warn({ touchId: jobId }, 'touch job stalled (a worker died or blocked); it runs again and the send ledger stops a second send');
    });
    this.worker.on('failed', (job, err) => {
      if (job === undefined) return;
      const final = job.attemptsMade >= (job.opts.attempts ?? 1) || err.name === 'UnrecoverableError';
      if (final) this.log.warn({ touchId: job.id, channel: job.name, attempts: job.attemptsMade, err: err.message }, 'touch failed for good; see the failed-touch view');
      // A provider's retriable failure is logged where it happens (touch-processor). Anything
      // else — Redis refusing a ledger or rate-limit script (NOPERM from a too-narrow ACL, OOM) —
      // was silent until the last attempt, so a misconfigured worker looked merely slow.
      else if (!(err instanceof RetriableTouchError) && !(isNudgeError(err) && err.retriable)) this.log.warn({ touchId: job.id, channel: job.name, attempt: job.attemptsMade, err: describeError(err) }, 'touch attempt failed before reaching the provider; retrying (check Redis and its ACL)');
    });
    this.worker.on('error', (err) => this.log.error({ err: describeError(err) }, 'touch worker error'));
  }

  run(): Promise<void> {
    return this.worker.run();
  }

  /**
   * Stops taking jobs and waits for the ones running. `force`: aborts running sends (their
   * outcome is unknown; the lease rules decide on the next run) and does not wait.
   */
  async close(force = false): Promise<void> {
    if (force) this.closing.abort(new Error('worker closing'));
    await this.worker.close(force);
  }
}
