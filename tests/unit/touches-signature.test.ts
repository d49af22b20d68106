import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signWebhook, verifyWebhook, webhookHeaders, webhookSecretKey } from '../../src/touches/channels/standard-webhooks.js';

// The known-answer vector of the Standard Webhooks reference libraries (libraries/javascript/src/webhook.test.ts).
const SPEC_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const SPEC_ID = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
const SPEC_TS = 1614265330;
const SPEC_BODY = '{"test": 2432232314}';
const SPEC_SIG = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';

const secret = () => `whsec_${randomBytes(32).toString('base64')}`;

describe('Standard Webhooks signatures', () => {
  it('matches the reference libraries on their known-answer vector', () => {
    expect(signWebhook(webhookSecretKey(SPEC_SECRET), SPEC_ID, SPEC_TS, SPEC_BODY)).toBe(SPEC_SIG);
    const headers = { 'webhook-id': SPEC_ID, 'webhook-timestamp': String(SPEC_TS), 'webhook-signature': SPEC_SIG };
    expect(verifyWebhook(SPEC_SECRET, SPEC_BODY, headers, { nowMs: SPEC_TS * 1000 })).toEqual({ ok: true, id: SPEC_ID, timestampSec: SPEC_TS });
  });

  it('signs the base64 HMAC-SHA256 of "id.timestamp.body" with the decoded secret', () => {
    const s = secret();
    const key = Buffer.from(s.slice('whsec_'.length), 'base64');
    const mac = createHmac('sha256', key).update('t1.1700000000.{"a":1}').digest('base64');
    expect(signWebhook(webhookSecretKey(s), 't1', 1700000000, '{"a":1}')).toBe(`v1,${mac}`);
  });

  it('refuses a tampered body, id or timestamp, and a wrong secret', () => {
    const s = secret();
    const now = 1_700_000_000_000;
    const body = '{"type":"nudge.touch","data":{"touchId":"t1"}}';
    const h = webhookHeaders([webhookSecretKey(s)], 't1', now / 1000, body);
    expect(verifyWebhook(s, body, h, { nowMs: now }).ok).toBe(true);
    expect(verifyWebhook(s, body.replace('t1', 't2'), h, { nowMs: now })).toEqual({ ok: false, reason: 'no-matching-signature' });
    expect(verifyWebhook(s, body, { ...h, 'webhook-id': 't2' }, { nowMs: now })).toEqual({ ok: false, reason: 'no-matching-signature' });
    expect(verifyWebhook(s, body, { ...h, 'webhook-timestamp': String(now / 1000 + 1) }, { nowMs: now })).toEqual({ ok: false, reason: 'no-matching-signature' });
    expect(verifyWebhook(secret(), body, h, { nowMs: now })).toEqual({ ok: false, reason: 'no-matching-signature' });
    expect(verifyWebhook(s, body, { ...h, 'webhook-signature': 'v1,' }, { nowMs: now }).ok).toBe(false);
    expect(verifyWebhook(s, body, { ...h, 'webhook-signature': h['webhook-signature']!.replace('v1,', 'v1a,') }, { nowMs: now }).ok).toBe(false);
  });

  it('detects stale (replayed) and future deliveries outside the tolerance window', () => {
    const s = secret();
    const body = '{}';
    const sent = 1_700_000_000;
    const h = webhookHeaders([webhookSecretKey(s)], 't1', sent, body);
    expect(verifyWebhook(s, body, h, { nowMs: (sent + 299) * 1000 }).ok).toBe(true);
    expect(verifyWebhook(s, body, h, { nowMs: (sent + 301) * 1000 })).toEqual({ ok: false, reason: 'stale' });
    expect(verifyWebhook(s, body, h, { nowMs: (sent - 301) * 1000 })).toEqual({ ok: false, reason: 'future' });
    expect(verifyWebhook(s, body, h, { nowMs: (sent + 30) * 1000, toleranceSec: 10 })).toEqual({ ok: false, reason: 'stale' });
    expect(verifyWebhook(s, body, { ...h, 'webhook-timestamp': '17e8' }, { nowMs: sent * 1000 })).toEqual({ ok: false, reason: 'bad-timestamp' });
    expect(verifyWebhook(s, body, { 'webhook-id': 't1' }, { nowMs: sent * 1000 })).toEqual({ ok: false, reason: 'missing-headers' });
  });

  it('signs with every secret during a rotation; receivers with either secret accept', () => {
    const [current, old] = [secret(), secret()];
    const h = webhookHeaders([webhookSecretKey(current), webhookSecretKey(old)], 't9', 1_700_000_000, 'x');
    expect(h['webhook-signature']!.split(' ')).toHaveLength(2);
    for (const s of [current, old]) expect(verifyWebhook(s, 'x', h, { nowMs: 1_700_000_000_000 }).ok).toBe(true);
    expect(verifyWebhook([secret(), old], 'x', h, { nowMs: 1_700_000_000_000 }).ok).toBe(true);
  });

  it('reads headers case-insensitively and as arrays (node:http gives both shapes)', () => {
    const s = secret();
    const h = webhookHeaders([webhookSecretKey(s)], 't1', 1_700_000_000, 'b');
    const upper = Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toUpperCase(), [v]]));
    expect(verifyWebhook(s, Buffer.from('b'), upper, { nowMs: 1_700_000_000_000 }).ok).toBe(true);
  });

  it('refuses secrets that are not whsec_ + base64 of 24–64 bytes, without echoing them', () => {
    for (const bad of ['', 'whsec_', 'whsec_c2hvcnQ=', 'whsec_not base64!!', `whsec_${randomBytes(65).toString('base64')}`]) {
      let message = '';
      try {
        webhookSecretKey(bad);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(/whsec_/);
      if (bad.length > 8) expect(message).not.toContain(bad.slice(6));
    }
    expect(webhookSecretKey(`whsec_${randomBytes(24).toString('base64')}`)).toHaveLength(24);
  });
});
