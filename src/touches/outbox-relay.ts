import type { Redis } from 'ioredis';
import { describeError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { decodeOutboxEntry, type OutboxEntry } from './outbox-entry.js';
import { OutboxStore } from './outbox-store.js';
import type { TouchJob } from './touch-job.js';
import type { TouchMetrics } from './touch-metrics.js';
import { touchJobEntry, type TouchJobEntry, type TouchJobPolicy, type TouchQueue } from './touch-queue.js';
import { WakeLoop } from './wake-loop.js';

export interface OutboxRelayOptions {
  /** Reads and clears the outboxes. */
  redis: Redis;
  queue: TouchQueue;
  /**
   * The outboxes to drain: `outboxKey(laneTag)` of each lane this instance owns. A function,
   * because lanes move on rebalance; a new owner drains what the previous one left behind.
   */
  outboxKeys: readonly string[] | (() => readonly string[]);
  /** Attempts and retention of the jobs it adds. */
  jobPolicy?: TouchJobPolicy;
  /** Entries read per outbox per pass. @default 500 */
  batchSize?: number;
  /** Jobs per `addBulk` call (the perf anchors measured 500–1000 as the sweet spot). @default 1000 */
  addBulkSize?: number;
  /** Idle wait between passes when `wake()` is not called; a safety net, not the main path. @default 250 */
  pollIntervalMs?: number;
  /** First wait after a failed pass (Redis down); doubles up to `maxBackoffMs`. @default 100 */
  initialBackoffMs?: number;
  /** @default 5_000 */
  maxBackoffMs?: number;
  /** How often a pass also refreshes the outbox depth gauge. @default 1_000 */
  depthIntervalMs?: number;
  logger?: Logger;
  metrics?: TouchMetrics;
  clock?: () => number;
  /**
   * Called after entries are in BullMQ and before they are cleared from the outbox. A throw
   * ends the pass without clearing, exactly like a crash at that point (tests inject one there).
   */
  onAdded?: (jobs: readonly TouchJob[]) => void | Promise<void>;
}

export interface RelayPassResult {
  /** Entries added to BullMQ (re-adds of existing job ids included; they are no-ops). */
  relayed: number;
  /** Entries that did not match the contract, moved to `<outbox>:rejected`. */
  rejected: number;
  /** Entries removed from the outboxes. */
  cleared: number;
  /** True when an outbox had a full batch: there may be more right away. */
  more: boolean;
}

const DEFAULTS = { batchSize: 500, addBulkSize: 1000, pollIntervalMs: 250, initialBackoffMs: 100, maxBackoffMs: 5_000, depthIntervalMs: 1_000 };

/**
 * Moves committed touches from the lanes' outboxes into BullMQ (DESIGN §5): read entries,
 * `addBulk` them with `jobId` = touch id, then clear exactly those entries. A crash between
 * the add and the clear leaves the entries in place; the next pass adds them again, which
 * BullMQ ignores because the job (waiting, delayed, active, completed or failed) still exists.
 * The window where that is not true: a completed job older than `keepCompletedSeconds` is gone,
 * so an entry stuck that long would be enqueued again — and then stopped by the send ledger.
 *
 * Wake-ups: the engine calls `wake()` after a commit that wrote touches (the commit runs in the
 * same process), so a touch is in BullMQ a round trip or two after its commit; the poll interval
 * only catches what no wake announced (a lane taken over from a crashed instance).
 */
export class OutboxRelay {
  private readonly store: OutboxStore;
  private readonly o: OutboxRelayOptions & typeof DEFAULTS;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly loop: WakeLoop;
  private lastDepthAt = -Infinity;

  constructor(options: OutboxRelayOptions) {
    this.o = { ...DEFAULTS, ...stripUndefined(options) };
    this.store = new OutboxStore(options.redis);
    this.log = options.logger ?? silentLogger();
    this.clock = options.clock ?? Date.now;
    this.loop = new WakeLoop(async () => (await this.drainOnce()).more, {
      intervalMs: this.o.pollIntervalMs,
      initialBackoffMs: this.o.initialBackoffMs,
      maxBackoffMs: this.o.maxBackoffMs,
      onError: (err, consecutive, delayMs) => {
        this.o.metrics?.relayErrors.inc();
        // Once, then every 20th: a Redis outage must not flood the log.
        if (consecutive === 1 || consecutive % 20 === 0) {
          this.log.warn({ err: describeError(err), consecutive, retryInMs: delayMs }, 'outbox relay pass failed; retrying with backoff');
        }
      },
    });
  }

  start(): void {
    this.loop.start();
  }

  /** Run a pass now (or right after the current one). Cheap; call it after every commit with touches. */
  wake(): void {
    this.loop.wake();
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }

  /** Touches committed and not yet relayed, over the current outboxes. */
  async depth(): Promise<number> {
    const n = await this.store.depth(this.keys());
    this.o.metrics?.outboxDepth.set(n);
    return n;
  }

  /** One pass over every outbox. Throws when Redis or BullMQ fails; nothing is cleared then. */
  async drainOnce(): Promise<RelayPassResult> {
    const keys = this.keys();
    const read = await this.store.read(keys, this.o.batchSize);
    const result: RelayPassResult = { relayed: 0, rejected: 0, cleared: 0, more: false };
    const valid: Array<{ key: string; entry: OutboxEntry; job: TouchJob }> = [];
    const rejectedByKey = new Map<string, OutboxEntry[]>();
    for (const [key, entries] of read) {
      if (entries.length >= this.o.batchSize) result.more = true;
      for (const entry of entries) {
        const decoded = decodeOutboxEntry(entry.field, entry.value);
        if (decoded.ok) {
          valid.push({ key, entry, job: decoded.job });
        } else {
          const list = rejectedByKey.get(key) ?? [];
          list.push(entry);
          rejectedByKey.set(key, list);
          // The field is a touch id or garbage; log a bounded prefix and the reason, never the value.
          this.log.error({ outbox: key, field: entry.field.slice(0, 64), reason: decoded.reason }, 'outbox entry set aside: it does not match the touch job contract');
        }
      }
    }
    if (valid.length > 0) await this.add(valid.map((v) => v.job));
    result.relayed = valid.length;
    if (valid.length > 0) await this.o.onAdded?.(valid.map((v) => v.job));

    const addedByKey = new Map<string, OutboxEntry[]>();
    for (const v of valid) {
      const list = addedByKey.get(v.key) ?? [];
      list.push(v.entry);
      addedByKey.set(v.key, list);
    }
    for (const key of new Set([...addedByKey.keys(), ...rejectedByKey.keys()])) {
      const rejected = rejectedByKey.get(key) ?? [];
      result.cleared += await this.store.clear(key, addedByKey.get(key) ?? [], rejected);
      result.rejected += rejected.length;
    }
    if (result.rejected > 0) this.o.metrics?.outboxRejected.inc(result.rejected);
    if (this.o.metrics !== undefined && this.clock() - this.lastDepthAt >= this.o.depthIntervalMs) {
      this.lastDepthAt = this.clock();
      await this.depth();
    }
    return result;
  }

  private async add(jobs: readonly TouchJob[]): Promise<void> {
    const now = this.clock();
    const entries: TouchJobEntry[] = jobs.map((j) => touchJobEntry(j, now, this.o.jobPolicy));
    for (let i = 0; i < entries.length; i += this.o.addBulkSize) {
      await this.o.queue.addBulk(entries.slice(i, i + this.o.addBulkSize));
    }
    const m = this.o.metrics;
    if (m !== undefined) {
      m.relayed.inc(jobs.length);
      const done = this.clock();
      for (const j of jobs) if (j.sendAt <= now) m.triggerToEnqueue.observe(Math.max(0, done - j.triggeredAt) / 1000);
    }
  }

  private keys(): readonly string[] {
    const k = this.o.outboxKeys;
    return typeof k === 'function' ? k() : k;
  }
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
