import { afterEach, describe, expect, inject, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { LogAdapter } from '../../src/touches/channels/log-adapter.js';
import { touchKeys } from '../../src/touches/keys.js';
import { TouchWorker } from '../../src/touches/touch-worker.js';
import { until } from '../support/poll.js';
import { capturedLogger, makeTouch, touchHarness, waitForJob, type TouchHarness } from '../support/touch-harness.js';

/**
 * Redis refusing the worker's own bookkeeping (a too-narrow ACL, out of memory, a wrong key
 * type) must be visible before the last attempt: it used to be silent until the job failed for
 * good, so a misconfigured worker looked merely slow. Real Redis, real BullMQ worker.
 */
let h: TouchHarness;
afterEach(async () => {
  await h?.cleanup();
});

describe('touch worker: Redis refusals are logged and retried', () => {
  it('a ledger script refused by Redis is warned about on the first attempt and the touch is sent once it passes', async () => {
    h = touchHarness(inject('redisUrl'));
    const log = capturedLogger();
    const t = makeTouch({ channel: 'log' });
    // A hash where the send ledger keeps a string: its script fails with WRONGTYPE, as it would
    // with NOPERM or OOM, before any provider call.
    const ledgerKey = touchKeys(h.namespace).ledger(t.touchId);
    await h.redis.hset(ledgerKey, 'x', '1');
    const w = new TouchWorker({ connection: h.redis, queueName: h.queueName, prefix: h.prefix, namespace: h.namespace, adapters: [new LogAdapter(silentLogger())], backoff: { initialMs: 50, jitter: 0 }, logger: log.logger });
    h.defer(() => w.close(true));
    await h.enqueue([t], { attempts: 20 });
    await until('the warning', 15_000, () => log.text().includes('touch attempt failed before reaching the provider'));
    const line = JSON.parse(log.text().split('\n').find((l) => l.includes('before reaching the provider')) ?? '{}') as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'warn', touchId: t.touchId, channel: 'log' });
    expect(String(line['err'])).toMatch(/WRONGTYPE/);
    await h.redis.del(ledgerKey);
    expect(await waitForJob(h.queue, t.touchId, ['completed'], 30_000)).toBe('completed');
    expect((await h.queue.getJob(t.touchId))?.returnvalue).toEqual({ outcome: 'sent' });
  });

  it('a send-time re-check that cannot read the state is warned about with its kind only', async () => {
    h = touchHarness(inject('redisUrl'));
    const log = capturedLogger();
    const t = makeTouch({ channel: 'log' });
    let fail = true;
    const w = new TouchWorker({
      connection: h.redis, queueName: h.queueName, prefix: h.prefix, namespace: h.namespace, adapters: [new LogAdapter(silentLogger())],
      backoff: { initialMs: 50, jitter: 0 }, logger: log.logger,
      recheck: async () => {
        if (fail) throw new SyntaxError('Unexpected token in JSON: {"traits":{"name":"Canary Person"}}');
        return { send: true, reason: 'sent' };
      },
    });
    h.defer(() => w.close(true));
    await h.enqueue([t], { attempts: 20 });
    await until('the warning', 15_000, () => log.text().includes('send-time re-check could not read the user state'));
    expect(log.text()).toContain('"kind":"SyntaxError"');
    expect(log.text()).not.toContain('Canary Person');
    fail = false;
    expect(await waitForJob(h.queue, t.touchId, ['completed'], 30_000)).toBe('completed');
  });
});
