import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { Redis } from 'ioredis';
import { createLogger, type Logger } from '../../src/log.js';
import type { TouchJob } from '../../src/touches/touch-job.js';
import { openTouchQueue, touchJobEntry, type TouchJobPolicy, type TouchQueue } from '../../src/touches/touch-queue.js';
import { dropKeys } from './engine-harness.js';

export interface TouchHarness {
  /** `maxRetriesPerRequest: null`, as BullMQ workers need. */
  redis: Redis;
  /** Unique to this harness: the touches' namespace, the lanes' namespace and the BullMQ prefix start with it. */
  namespace: string;
  prefix: string;
  queueName: string;
  queue: TouchQueue;
  /** Lane tag `{ns:topic:partition}` of this harness's namespace. */
  laneTag(partition: number): string;
  /** Closes it with the harness (workers, relays, servers), before the keys are deleted. */
  defer(close: () => Promise<unknown> | unknown): void;
  /** Adds touches straight to the queue (the relay's job shape), bypassing the outbox. */
  enqueue(jobs: TouchJob[], policy?: TouchJobPolicy): Promise<void>;
  cleanup(): Promise<void>;
}

/** One test's queue, namespace and connection on the shared Redis; cleanup deletes only its keys. */
export function touchHarness(url: string): TouchHarness {
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  const namespace = `nudge-test-${process.pid}-${randomBytes(4).toString('hex')}`;
  const prefix = `${namespace}-bull`;
  const queueName = 'nudge-touches';
  const queue = openTouchQueue({ connection: redis, name: queueName, prefix });
  const closers: Array<() => Promise<unknown> | unknown> = [];
  return {
    redis,
    namespace,
    prefix,
    queueName,
    queue,
    laneTag: (p) => `{${namespace}:events:${p}}`,
    defer: (c) => closers.push(c),
    async enqueue(jobs, policy = { attempts: 3 }) {
      const now = Date.now();
      await queue.addBulk(jobs.map((j) => touchJobEntry(j, now, policy)));
    },
    async cleanup() {
      for (const c of closers.reverse()) await c();
      await queue.obliterate({ force: true }).catch(() => {});
      await queue.close();
      await dropKeys(redis, [`${namespace}*`, `{${namespace}*`]);
      await redis.quit();
    },
  };
}

let seq = 0;
/** A touch due now, with a fresh id. */
export function makeTouch(over: Partial<TouchJob> = {}): TouchJob {
  const now = Date.now();
  seq++;
  return {
    touchId: `t${process.pid}x${seq}x${randomBytes(3).toString('hex')}`,
    userId: `u${seq}`,
    journeyId: 'loan-interest',
    stepId: 'offer',
    channel: 'webhook',
    template: 'loan_offer',
    variant: 'A',
    triggerEventId: `e${seq}`,
    triggeredAt: now,
    sendAt: now,
    attributes: { product: 'loan' },
    ...over,
  };
}

/** Polls a job's state until it is one of `states`. */
export async function waitForJob(queue: TouchQueue, id: string, states: string[], timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = 'missing';
  for (;;) {
    const job = await queue.getJob(id);
    last = job ? await job.getState() : 'missing';
    if (states.includes(last)) return last;
    if (Date.now() > deadline) throw new Error(`job ${id} is ${last}, not ${states.join('/')}, after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A debug-level logger whose output the test can read. */
export function capturedLogger(): { logger: Logger; text(): string } {
  const out = new PassThrough();
  const chunks: string[] = [];
  out.on('data', (c: Buffer) => chunks.push(c.toString()));
  return { logger: createLogger({ destination: out, level: 'debug', name: 'touches-test' }), text: () => chunks.join('') };
}

export function webhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}
