/**
 * Validation of decoded events: required fields, length and size bounds, character sets, sane
 * times, finite values and known time zones. Every rule has its own stable code
 * (EVENT_ERROR_CODES) and a message that says what to do, without personal data: ids, device
 * ids, prop keys and prop values are described by their length, never quoted.
 *
 * The rules do not depend on the clock, so replaying a topic or the DLQ gives the same verdicts.
 * Moderate clock skew is not an error here: the pipeline clamps future times (DESIGN §4); only
 * absurd times (wrong unit, unset clock) are refused.
 */
import {
  DEFAULT_MAX_EVENT_BYTES,
  EVENT_ERROR_CODES,
  decodeEvent,
  type AppEvent,
  type DecodeLimits,
  type DecodeResult,
  type EventErrorCode,
  type EventRejection,
} from './event.js';

export { EVENT_ERROR_CODES };
export type { EventErrorCode, EventRejection };

export interface EventLimits extends DecodeLimits {
  /** @default 65536 */
  maxEventBytes: number;
  /** @default 128 */
  maxEventIdLength: number;
  /** @default 128 */
  maxUserIdLength: number;
  /** @default 64 */
  maxNameLength: number;
  /** @default 32 */
  maxChannelLength: number;
  /** @default 128 */
  maxDeviceIdLength: number;
  /** @default 32 */
  maxProps: number;
  /** @default 64 */
  maxPropKeyLength: number;
  /** @default 512 */
  maxPropValueLength: number;
  /** UTF-8 bytes of all prop keys and values together. @default 4096 */
  maxPropsBytes: number;
}

export const DEFAULT_EVENT_LIMITS: Readonly<EventLimits> = Object.freeze({
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
  maxEventIdLength: 128,
  maxUserIdLength: 128,
  maxNameLength: 64,
  maxChannelLength: 32,
  maxDeviceIdLength: 128,
  maxProps: 32,
  maxPropKeyLength: 64,
  maxPropValueLength: 512,
  maxPropsBytes: 4096,
});

/** 2000-01-01T00:00:00Z: earlier event times are a unit error (seconds) or an unset clock. */
export const MIN_EVENT_TIME_MS = 946_684_800_000;
/** 2100-01-01T00:00:00Z, exclusive: later times are a unit error (µs, ns). */
export const MAX_EVENT_TIME_MS = 4_102_444_800_000;

/** The longest IANA zone name is 32 characters; anything much longer is not a zone. */
const MAX_TZ_LENGTH = 64;
/** Distinct tz strings whose verdict is remembered; Intl.DateTimeFormat costs ~20 µs a call. */
const TZ_CACHE_SIZE = 1000;

const NAME_CHARS = /^[A-Za-z0-9_.:-]*$/;
const BAD_NAME_CHAR = /[^A-Za-z0-9_.:-]/;

function rejection(code: EventErrorCode, message: string): EventRejection {
  return { code, message };
}

/** "at position 5 (U+0020)": where and which character, never the surrounding text. */
function describeBadChar(s: string): string {
  const i = s.search(BAD_NAME_CHAR);
  const cp = s.codePointAt(i) ?? 0;
  return `at position ${i} (U+${cp.toString(16).toUpperCase().padStart(4, '0')})`;
}

const tzVerdicts = new Map<string, boolean>();

/**
 * Whether Intl accepts the zone. Verdicts are cached because constructing a DateTimeFormat is
 * far slower than the rest of validation; the cache is bounded (oldest entry evicted first) and
 * only short strings are looked up, so a flood of random tz values costs at most
 * TZ_CACHE_SIZE x MAX_TZ_LENGTH characters of memory.
 */
export function isKnownTimeZone(tz: string): boolean {
  if (tz.length === 0 || tz.length > MAX_TZ_LENGTH) return false;
  const cached = tzVerdicts.get(tz);
  if (cached !== undefined) return cached;
  let ok: boolean;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    ok = true;
  } catch {
    ok = false;
  }
  if (tzVerdicts.size >= TZ_CACHE_SIZE) {
    const oldest = tzVerdicts.keys().next().value;
    if (oldest !== undefined) tzVerdicts.delete(oldest);
  }
  tzVerdicts.set(tz, ok);
  return ok;
}

/** For tests and metrics: how many tz verdicts are cached. */
export function tzCacheSize(): number {
  return tzVerdicts.size;
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

function iso(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? 'not a date' : d.toISOString();
}

/** A guess at the unit mistake behind an absurd time, to make the message actionable. */
function unitHint(ms: number): string {
  if (ms >= MIN_EVENT_TIME_MS / 1000 && ms < MAX_EVENT_TIME_MS / 1000) return ' It looks like seconds; multiply by 1000.';
  if (ms >= MIN_EVENT_TIME_MS * 1000 && ms < MAX_EVENT_TIME_MS * 1000) return ' It looks like microseconds; divide by 1000.';
  if (ms >= MIN_EVENT_TIME_MS * 1e6 && ms < MAX_EVENT_TIME_MS * 1e6) return ' It looks like nanoseconds; divide by 1000000.';
  return '';
}

function checkRequired(e: AppEvent, l: EventLimits): EventRejection | null {
  if (e.eventId.length === 0) {
    return rejection('NUDGE_EVENT_MISSING_EVENT_ID', 'event_id is empty. Give every event a unique id (a UUID or ULID) and reuse it when retrying.');
  }
  if (e.eventId.length > l.maxEventIdLength) {
    return rejection('NUDGE_EVENT_EVENT_ID_TOO_LONG', `event_id is ${e.eventId.length} characters; the limit is ${l.maxEventIdLength}. Use a UUID or ULID.`);
  }
  if (e.userId.length === 0) {
    return rejection('NUDGE_EVENT_MISSING_USER_ID', 'user_id is empty. Set it to the id of the user the event is about.');
  }
  if (e.userId.length > l.maxUserIdLength) {
    return rejection('NUDGE_EVENT_USER_ID_TOO_LONG', `user_id is ${e.userId.length} characters; the limit is ${l.maxUserIdLength}. Shorten it or hash it before producing.`);
  }
  if (e.name.length === 0) {
    return rejection('NUDGE_EVENT_MISSING_NAME', 'name is empty. Set it to the event type, such as "login" or "transfer_done".');
  }
  if (e.name.length > l.maxNameLength) {
    return rejection('NUDGE_EVENT_NAME_TOO_LONG', `name is ${e.name.length} characters; the limit is ${l.maxNameLength}. Event names are types such as "login"; put details in props.`);
  }
  if (!NAME_CHARS.test(e.name)) {
    return rejection('NUDGE_EVENT_NAME_BAD_CHARS', `name has a character outside [A-Za-z0-9_.:-] ${describeBadChar(e.name)}. Use a fixed identifier such as "page_view"; put variable data in props.`);
  }
  return null;
}

function checkOptionalStrings(e: AppEvent, l: EventLimits): EventRejection | null {
  if (e.channel.length > l.maxChannelLength) {
    return rejection('NUDGE_EVENT_CHANNEL_TOO_LONG', `channel is ${e.channel.length} characters; the limit is ${l.maxChannelLength}. Use a short identifier such as "app" or "web".`);
  }
  if (!NAME_CHARS.test(e.channel)) {
    return rejection('NUDGE_EVENT_CHANNEL_BAD_CHARS', `channel has a character outside [A-Za-z0-9_.:-] ${describeBadChar(e.channel)}. Use a fixed identifier such as "app" or "mini_program".`);
  }
  if (e.deviceId.length > l.maxDeviceIdLength) {
    return rejection('NUDGE_EVENT_DEVICE_ID_TOO_LONG', `device_id is ${e.deviceId.length} characters; the limit is ${l.maxDeviceIdLength}. Shorten it or hash it before producing.`);
  }
  return null;
}

function checkProps(props: Record<string, string>, l: EventLimits): EventRejection | null {
  const keys = Object.keys(props);
  if (keys.length > l.maxProps) {
    return rejection('NUDGE_EVENT_TOO_MANY_PROPS', `props has ${keys.length} entries; the limit is ${l.maxProps}. Send only the properties journeys use.`);
  }
  // UTF-16 length bounds UTF-8 bytes from below and 3x length from above (a lone surrogate
  // encodes as 3 bytes, a pair as 4 for 2 units), so exact byte counting is only needed near
  // the limit.
  let units = 0;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    const v = props[k] as string;
    if (k.length === 0) {
      return rejection('NUDGE_EVENT_PROP_KEY_EMPTY', 'a prop key is the empty string. Give every property a name.');
    }
    if (k.length > l.maxPropKeyLength) {
      return rejection('NUDGE_EVENT_PROP_KEY_TOO_LONG', `a prop key is ${k.length} characters; the limit is ${l.maxPropKeyLength}. Prop keys are names such as "page"; put data in the value.`);
    }
    if (v.length > l.maxPropValueLength) {
      return rejection('NUDGE_EVENT_PROP_VALUE_TOO_LONG', `a prop value (key of ${k.length} characters) is ${v.length} characters; the limit is ${l.maxPropValueLength}. Send an id or a category, not the content.`);
    }
    units += k.length + v.length;
  }
  if (units * 3 > l.maxPropsBytes) {
    let bytes = 0;
    for (const k of keys) bytes += utf8Length(k) + utf8Length(props[k] as string);
    if (bytes > l.maxPropsBytes) {
      return rejection('NUDGE_EVENT_PROPS_TOO_LARGE', `props total ${bytes} bytes of UTF-8; the limit is ${l.maxPropsBytes}. Send fewer or shorter properties.`);
    }
  }
  return null;
}

function checkNumbers(e: AppEvent, nowMs: number): EventRejection | null {
  const t = e.timeMs;
  if (t === 0) {
    return rejection('NUDGE_EVENT_MISSING_TIME', 'time_ms is 0 or absent. Set it to the event time in milliseconds since the Unix epoch (UTC).');
  }
  if (t < 0) {
    return rejection('NUDGE_EVENT_TIME_NEGATIVE', `time_ms is negative (${t}). Set it to the event time in milliseconds since the Unix epoch (UTC).`);
  }
  if (!(t >= MIN_EVENT_TIME_MS && t < MAX_EVENT_TIME_MS)) {
    return rejection(
      'NUDGE_EVENT_TIME_OUT_OF_RANGE',
      `time_ms ${t} (${iso(t)}) is outside 2000-01-01..2100-01-01 UTC; the engine's clock reads ${iso(nowMs)}.${unitHint(t)} ` +
        'Send milliseconds since the Unix epoch (UTC) from a synchronised clock.',
    );
  }
  if (!Number.isFinite(e.value)) {
    return rejection('NUDGE_EVENT_VALUE_NOT_FINITE', `value is ${e.value}. Send a finite number, or 0 when the event has no amount.`);
  }
  const s = e.sentMs;
  if (!(s >= 0 && s < MAX_EVENT_TIME_MS)) {
    return rejection(
      'NUDGE_EVENT_SENT_MS_OUT_OF_RANGE',
      `sent_ms ${s} is ${s < 0 ? 'negative' : 'not before 2100-01-01 UTC'}.${s < 0 ? '' : unitHint(s)} ` +
        'Set it to the send time in milliseconds since the Unix epoch, or 0 if unknown.',
    );
  }
  return null;
}

/**
 * Checks a decoded event against the limits. Returns null when the event is usable, else the
 * first rule it breaks. `nowMs` only makes messages concrete; verdicts never depend on it.
 */
export function validateEvent(
  e: AppEvent,
  limits: EventLimits = DEFAULT_EVENT_LIMITS,
  nowMs: number,
): EventRejection | null {
  const l = limits;
  return (
    checkRequired(e, l) ??
    checkOptionalStrings(e, l) ??
    checkProps(e.props, l) ??
    checkNumbers(e, nowMs) ??
    (e.tz.length > 0 && !isKnownTimeZone(e.tz)
      ? rejection('NUDGE_EVENT_BAD_TZ', `tz (${e.tz.length} characters) is not a time zone this runtime knows. Send an IANA name such as "Asia/Shanghai", or "" if unknown.`)
      : null)
  );
}

/** Decode then validate: the one call the consumer and the DLQ replayer use. Never throws. */
export function parseEvent(
  bytes: Uint8Array,
  limits: EventLimits = DEFAULT_EVENT_LIMITS,
  nowMs: number,
): DecodeResult {
  const decoded = decodeEvent(bytes, limits);
  if (!decoded.ok) return decoded;
  const bad = validateEvent(decoded.event, limits, nowMs);
  return bad === null ? decoded : { ok: false, rejection: bad };
}
