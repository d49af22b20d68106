/**
 * The touch job contract (DESIGN §2.2). One BullMQ job per touch on the queue `nudge-touches`
 * (configurable): `job.name` = channel, `job.id` = touch id, `job.data` = a `TouchJob`.
 * Workers, dashboards and other programs read these jobs, so fields may be added but never
 * renamed or retyped.
 */

/** Attribute values a template may use. Only what the template names goes here (no profile dumps). */
export type TouchAttribute = string | number | boolean | null;

export interface TouchJob {
  /** Deterministic: a hash of (journey, step, user, occurrence); see `touchId()`. */
  touchId: string;
  userId: string;
  journeyId: string;
  stepId: string;
  /** "push", "sms", "webhook", "log", ... = `job.name`. */
  channel: string;
  template: string;
  /** A/B variant ("A", "B", ...); "" when the journey has no variants. */
  variant: string;
  /** The event that triggered the touch; "" for a timer (absence, inactivity). */
  triggerEventId: string;
  /** When the decision was made (wall clock, ms since the epoch). */
  triggeredAt: number;
  /** When to send (ms since the epoch). In the future = a delayed job. */
  sendAt: number;
  attributes: Record<string, TouchAttribute>;
}

/**
 * Touch ids become BullMQ job ids and Standard Webhooks `webhook-id`s: BullMQ refuses ids with
 * `:` and treats all-digit ids as its own counters; the webhook spec asks for ids without `.`
 * (the signed content is `${id}.${timestamp}.${body}`). Hence a small, safe alphabet.
 */
const TOUCH_ID = /^[A-Za-z0-9_-]{1,128}$/;
const ALL_DIGITS = /^[0-9]+$/;
const MAX_ATTRIBUTES = 64;
const MAX_TEXT = 512;

export function isValidTouchId(id: string): boolean {
  return TOUCH_ID.test(id) && !ALL_DIGITS.test(id);
}

const TEXT_FIELDS = ['userId', 'journeyId', 'stepId', 'channel', 'template', 'variant', 'triggerEventId'] as const;
const REQUIRED_TEXT = new Set<string>(['userId', 'journeyId', 'stepId', 'channel', 'template']);

/**
 * Checks a value against the contract and returns a clean copy (unknown fields dropped), or a
 * reason without personal data: field names and limits, never values.
 */
export function validateTouchJob(value: unknown): { ok: true; job: TouchJob } | { ok: false; reason: string } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, reason: 'not a JSON object' };
  const v = value as Record<string, unknown>;
  if (typeof v.touchId !== 'string' || !isValidTouchId(v.touchId)) {
    return { ok: false, reason: 'touchId must be 1-128 of [A-Za-z0-9_-] and not all digits' };
  }
  for (const f of TEXT_FIELDS) {
    const s = v[f];
    if (typeof s !== 'string') return { ok: false, reason: `${f} must be a string` };
    if (s.length > MAX_TEXT) return { ok: false, reason: `${f} is longer than ${MAX_TEXT} characters` };
    if (REQUIRED_TEXT.has(f) && s === '') return { ok: false, reason: `${f} must not be empty` };
  }
  for (const f of ['triggeredAt', 'sendAt'] as const) {
    if (typeof v[f] !== 'number' || !Number.isSafeInteger(v[f]) || (v[f] as number) < 0) {
      return { ok: false, reason: `${f} must be a non-negative integer (ms since the epoch)` };
    }
  }
  const attrs = v.attributes;
  if (typeof attrs !== 'object' || attrs === null || Array.isArray(attrs)) return { ok: false, reason: 'attributes must be an object' };
  const entries = Object.entries(attrs as Record<string, unknown>);
  if (entries.length > MAX_ATTRIBUTES) return { ok: false, reason: `more than ${MAX_ATTRIBUTES} attributes` };
  const attributes: Record<string, TouchAttribute> = {};
  for (const [k, a] of entries) {
    const ok = a === null || typeof a === 'boolean' || (typeof a === 'number' && Number.isFinite(a)) || (typeof a === 'string' && a.length <= MAX_TEXT);
    if (!ok) return { ok: false, reason: `attribute ${JSON.stringify(k.slice(0, 64))} must be a string (≤ ${MAX_TEXT}), a finite number, a boolean or null` };
    // defineProperty: a key named __proto__ stays a plain key instead of changing the prototype.
    Object.defineProperty(attributes, k, { value: a, enumerable: true, writable: true, configurable: true });
  }
  const s = v as Record<(typeof TEXT_FIELDS)[number], string>;
  return {
    ok: true,
    job: {
      touchId: v.touchId,
      userId: s.userId,
      journeyId: s.journeyId,
      stepId: s.stepId,
      channel: s.channel,
      template: s.template,
      variant: s.variant,
      triggerEventId: s.triggerEventId,
      triggeredAt: v.triggeredAt as number,
      sendAt: v.sendAt as number,
      attributes,
    },
  };
}
