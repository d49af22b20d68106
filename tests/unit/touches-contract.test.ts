import { describe, expect, it } from 'vitest';
import { laneKeys } from '../../src/state/keys.js';
import { outboxKey, outboxRejectsKey, touchKeys } from '../../src/touches/keys.js';
import { decodeOutboxEntry, encodeOutboxEntry, MAX_OUTBOX_ENTRY_BYTES } from '../../src/touches/outbox-entry.js';
import { errorCodeOf } from '../../src/touches/job-errors.js';
import { touchId } from '../../src/touches/touch-id.js';
import { isValidTouchId, validateTouchJob, type TouchJob } from '../../src/touches/touch-job.js';
import { touchJobEntry } from '../../src/touches/touch-queue.js';

const T0 = 1_700_000_000_000;
const job = (over: Partial<TouchJob> = {}): TouchJob => ({
  touchId: 'tabc123',
  userId: 'u1',
  journeyId: 'loan-interest',
  stepId: 'offer',
  channel: 'push',
  template: 'loan_offer',
  variant: 'A',
  triggerEventId: 'e1',
  triggeredAt: T0,
  sendAt: T0,
  attributes: { product: 'loan', rate: 3.2 },
  ...over,
});

describe('touch job contract (DESIGN §2.2)', () => {
  it('accepts the documented shape and drops unknown fields', () => {
    const r = validateTouchJob({ ...job(), extra: 'x' });
    expect(r).toEqual({ ok: true, job: job() });
  });

  it('refuses ids BullMQ or Standard Webhooks cannot carry, with a reason naming the field only', () => {
    for (const id of ['', 'a:b', '12345', 'a.b', 'x'.repeat(129), 'a b']) {
      expect(isValidTouchId(id)).toBe(false);
      const r = validateTouchJob(job({ touchId: id }));
      expect(r.ok).toBe(false);
    }
    expect(isValidTouchId('t0123456789abcdef')).toBe(true);
  });

  it('refuses missing or mistyped fields and oversized or nested attributes', () => {
    const bad: unknown[] = [
      null, [], 'x',
      { ...job(), userId: '' },
      { ...job(), channel: 3 },
      { ...job(), sendAt: -1 },
      { ...job(), triggeredAt: 1.5 },
      { ...job(), attributes: [] },
      { ...job(), attributes: { nested: { a: 1 } } },
      { ...job(), attributes: { n: Number.NaN } },
      { ...job(), attributes: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, i])) },
    ];
    for (const b of bad) expect(validateTouchJob(b).ok).toBe(false);
    const r = validateTouchJob({ ...job(), attributes: { name: 'Zhang Wei', nested: { phone: '+8613800000000' } } });
    expect(r.ok === false && r.reason).not.toMatch(/Zhang|8613800000000/);
  });

  it('keeps an attribute called __proto__ a plain key', () => {
    const r = validateTouchJob(JSON.parse(`{"touchId":"t1","userId":"u","journeyId":"j","stepId":"s","channel":"c","template":"t","variant":"","triggerEventId":"","triggeredAt":1,"sendAt":1,"attributes":{"__proto__":"x"}}`));
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(Object.getPrototypeOf(r.job.attributes)).toBe(Object.prototype);
      expect(Object.keys(r.job.attributes)).toEqual(['__proto__']);
    }
  });
});

describe('touch ids', () => {
  it('are deterministic, valid job ids, and differ when any part differs', () => {
    const a = touchId({ journeyId: 'j', stepId: 's', userId: 'u', occurrence: 'e1' });
    expect(a).toBe(touchId({ journeyId: 'j', stepId: 's', userId: 'u', occurrence: 'e1' }));
    expect(isValidTouchId(a)).toBe(true);
    expect(a).toMatch(/^t[0-9a-f]{32}$/);
    const others = [
      touchId({ journeyId: 'j2', stepId: 's', userId: 'u', occurrence: 'e1' }),
      touchId({ journeyId: 'j', stepId: 's2', userId: 'u', occurrence: 'e1' }),
      touchId({ journeyId: 'j', stepId: 's', userId: 'u2', occurrence: 'e1' }),
      touchId({ journeyId: 'j', stepId: 's', userId: 'u', occurrence: 1_700_000_000_000 }),
      touchId({ journeyId: 'js', stepId: '', userId: 'u', occurrence: 'e1' }),
    ];
    expect(new Set([a, ...others]).size).toBe(6);
  });
});

describe('outbox entries and keys', () => {
  it('encode as field = touch id, value = the job JSON, and decode back', () => {
    const e = encodeOutboxEntry(job());
    expect(e.field).toBe('tabc123');
    expect(JSON.parse(e.value)).toEqual(job());
    expect(decodeOutboxEntry(e.field, e.value)).toEqual({ ok: true, job: job() });
  });

  it('refuse to decode garbage, a field that is not the touch id, or an oversized entry', () => {
    const e = encodeOutboxEntry(job());
    expect(decodeOutboxEntry(e.field, '{nope')).toEqual({ ok: false, reason: 'entry is not JSON' });
    expect(decodeOutboxEntry('tother', e.value)).toEqual({ ok: false, reason: 'entry field is not its touchId' });
    expect(decodeOutboxEntry(e.field, 'x'.repeat(MAX_OUTBOX_ENTRY_BYTES + 1)).ok).toBe(false);
    expect(() => encodeOutboxEntry(job({ touchId: 'a:b' }))).toThrow(/touchId/);
  });

  it('puts the outbox in the lane’s hash tag, so the commit script stays in one slot', () => {
    const lane = laneKeys('nudge', 'nudge.events', 3);
    expect(outboxKey(lane.tag)).toBe('{nudge:nudge.events:3}:outbox');
    expect(outboxRejectsKey(outboxKey(lane.tag))).toBe('{nudge:nudge.events:3}:outbox:rejected');
    expect(() => outboxKey('nudge:nudge.events:3')).toThrow(/lane tag/);
    const k = touchKeys('nudge');
    expect(k.ledger('t1')).toBe('nudge:touches:sent:t1');
    // The rate script's two keys share a tag.
    expect(k.rateReservation('sms', 't1', 0).startsWith(k.rate('sms'))).toBe(true);
    expect(k.rate('sms')).toMatch(/^\{[^}]+\}$/);
  });
});

describe('touch job options', () => {
  it('maps a touch to name = channel, jobId = touch id, retention by age only, delay only when due later', () => {
    const now = T0;
    const due = touchJobEntry(job(), now);
    expect(due.name).toBe('push');
    expect(due.data).toEqual(job());
    expect(due.opts).toMatchObject({ jobId: 'tabc123', attempts: 10, backoff: { type: 'nudge-touch' }, removeOnComplete: { age: 7 * 86_400 } });
    expect(due.opts.delay).toBeUndefined();
    expect((due.opts.removeOnComplete as { count?: number }).count).toBeUndefined();
    expect(touchJobEntry(job({ sendAt: now + 60_000 }), now).opts.delay).toBe(60_000);
    expect(touchJobEntry(job({ sendAt: now - 5 }), now).opts.delay).toBeUndefined();
  });

  it('reads the stable code back from a failed reason', () => {
    expect(errorCodeOf('NUDGE_TOUCH_DELIVERY_REJECTED: endpoint crm answered 404')).toBe('NUDGE_TOUCH_DELIVERY_REJECTED');
    expect(errorCodeOf('boom')).toBe('UNKNOWN');
    expect(errorCodeOf(undefined)).toBe('UNKNOWN');
  });
});
