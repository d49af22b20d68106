import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Standard Webhooks 1.0.0 symmetric signatures (standardwebhooks.com, spec/standard-webhooks.md):
 * the signed content is `${webhook-id}.${webhook-timestamp}.${body}`, HMAC-SHA256 keyed with the
 * base64-decoded part of a `whsec_…` secret, sent as `webhook-signature: v1,<base64>`; several
 * space-separated signatures during a secret rotation.
 */
const PREFIX = 'whsec_';
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
/** The spec: at least 24 random bytes, at most 64. */
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;

/** The HMAC key of a `whsec_<base64>` secret. The message never echoes the secret. */
export function webhookSecretKey(secret: string): Buffer {
  const b64 = secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret;
  const key = BASE64.test(b64) ? Buffer.from(b64, 'base64') : Buffer.alloc(0);
  if (key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) {
    throw new RangeError(
      `a webhook secret is "whsec_" + base64 of ${MIN_KEY_BYTES}–${MAX_KEY_BYTES} random bytes ` +
        `(got ${key.length} bytes); make one with: node -e "console.log('whsec_'+require('crypto').randomBytes(32).toString('base64'))"`,
    );
  }
  return key;
}

/** `v1,<base64 HMAC-SHA256 of "${id}.${timestampSec}.${body}">`. Signs the exact bytes sent. */
export function signWebhook(key: Buffer, id: string, timestampSec: number, body: string | Buffer): string {
  return `v1,${hmac(key, id, timestampSec, body).toString('base64')}`;
}

/** The three headers for one delivery, signed with every key (current first, then old ones). */
export function webhookHeaders(keys: readonly Buffer[], id: string, timestampSec: number, body: string | Buffer): Record<string, string> {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestampSec),
    'webhook-signature': keys.map((k) => signWebhook(k, id, timestampSec, body)).join(' '),
  };
}

export type WebhookVerification =
  | { ok: true; id: string; timestampSec: number }
  | { ok: false; reason: 'missing-headers' | 'bad-timestamp' | 'stale' | 'future' | 'no-matching-signature' };

export interface VerifyOptions {
  /** How far the timestamp may be from now, either way: older is a replay or a stale delivery. @default 300 */
  toleranceSec?: number;
  /** @default Date.now() */
  nowMs?: number;
}

/**
 * Verifies a delivery, for receivers and tests: headers present, timestamp within the tolerance
 * (a replayed or stale delivery fails), and one `v1` signature matching in constant time.
 * Receivers should also drop a `webhook-id` they have already processed (the idempotency key).
 */
export function verifyWebhook(
  secrets: string | readonly string[],
  body: string | Buffer,
  headers: Readonly<Record<string, string | readonly string[] | undefined>>,
  options: VerifyOptions = {},
): WebhookVerification {
  const h = (name: string): string | undefined => {
    const v = Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
    return Array.isArray(v) ? v[0] : (v as string | undefined);
  };
  const id = h('webhook-id');
  const ts = h('webhook-timestamp');
  const sig = h('webhook-signature');
  if (!id || !ts || !sig) return { ok: false, reason: 'missing-headers' };
  if (!/^[0-9]{1,12}$/.test(ts)) return { ok: false, reason: 'bad-timestamp' };
  const timestampSec = Number(ts);
  const nowSec = Math.floor((options.nowMs ?? Date.now()) / 1000);
  const tolerance = options.toleranceSec ?? 300;
  if (nowSec - timestampSec > tolerance) return { ok: false, reason: 'stale' };
  if (timestampSec - nowSec > tolerance) return { ok: false, reason: 'future' };
  const expected = (typeof secrets === 'string' ? [secrets] : secrets).map((s) => hmac(webhookSecretKey(s), id, timestampSec, body));
  for (const versioned of sig.split(' ')) {
    const comma = versioned.indexOf(',');
    if (comma < 0 || versioned.slice(0, comma) !== 'v1') continue;
    const given = Buffer.from(versioned.slice(comma + 1), 'base64');
    // A length mismatch reveals nothing secret (every HMAC-SHA256 is 32 bytes); only equal lengths are compared.
    for (const e of expected) if (given.length === e.length && timingSafeEqual(given, e)) return { ok: true, id, timestampSec };
  }
  return { ok: false, reason: 'no-matching-signature' };
}

function hmac(key: Buffer, id: string, timestampSec: number, body: string | Buffer): Buffer {
  return createHmac('sha256', key).update(`${id}.${timestampSec}.`).update(body).digest();
}
