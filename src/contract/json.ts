/**
 * JSON form of the event contract, for `nudge produce` (JSON lines) and HTTP ingest
 * (`POST /v1/events`). Field names are the proto's snake_case names; the camelCase forms of the
 * proto3 JSON mapping are accepted too. Unknown fields are refused, as the proto3 JSON mapping
 * does by default, so a misspelt optional field ("deviceID") is not silently dropped.
 *
 * The input is attacker-controlled: it is only read (own keys, via a Map lookup, never used as
 * a prototype or merged), and props are copied into a null-prototype object, where a
 * `__proto__` key is plain data. The result still has to pass validateEvent().
 */
import type { AppEvent, DecodeResult, EventRejection } from './event.js';

type StringField = 'eventId' | 'userId' | 'name' | 'channel' | 'tz' | 'deviceId';
type FieldSpec =
  | { field: StringField; snake: string; kind: 'string' }
  | { field: 'timeMs' | 'sentMs'; snake: string; kind: 'time' }
  | { field: 'value'; snake: string; kind: 'number' }
  | { field: 'props'; snake: string; kind: 'props' };

const FIELDS: readonly FieldSpec[] = [
  { field: 'eventId', snake: 'event_id', kind: 'string' },
  { field: 'userId', snake: 'user_id', kind: 'string' },
  { field: 'name', snake: 'name', kind: 'string' },
  { field: 'timeMs', snake: 'time_ms', kind: 'time' },
  { field: 'channel', snake: 'channel', kind: 'string' },
  { field: 'props', snake: 'props', kind: 'props' },
  { field: 'value', snake: 'value', kind: 'number' },
  { field: 'tz', snake: 'tz', kind: 'string' },
  { field: 'deviceId', snake: 'device_id', kind: 'string' },
  { field: 'sentMs', snake: 'sent_ms', kind: 'time' },
];

/** Accepted JSON key -> field. A Map, so keys such as "__proto__" or "toString" find nothing. */
const BY_KEY = new Map<string, FieldSpec>();
for (const f of FIELDS) {
  BY_KEY.set(f.snake, f);
  BY_KEY.set(f.field, f);
}

/** A refusal travelling back up the readers; turned into an EventRejection at the top. */
class Bad {
  constructor(readonly message: string) {}
}

function bad(message: string): Bad {
  return new Bad(message);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

/** A field name with case, "_" and "-" ignored: "deviceID", "Device-Id" and "device_id" agree. */
const loose = (k: string): string => k.toLowerCase().replace(/[_-]/g, '');
const LOOSE_FIELDS = new Set(FIELDS.map((f) => loose(f.snake)));

/**
 * Quoted only when it is a known field spelt another way ("deviceID"), the mistake the quote
 * helps fix; any other key is described by its length. Looking like an identifier was not enough:
 * a producer that puts data in keys sends `{"ZhangWei_13800138000": …}` (the PII canary test
 * found the reason quoting it, and reasons go into HTTP responses and logs).
 */
function describeKey(k: string): string {
  return k.length <= 40 && LOOSE_FIELDS.has(loose(k)) ? `"${k}"` : `a key of ${k.length} characters`;
}

/** What JSON.parse makes: an object whose prototype is Object.prototype (or null). */
function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function readString(key: string, v: unknown): string | Bad {
  if (typeof v === 'string') return v;
  const hint = typeof v === 'number' ? ' Quote it in JSON (integers above 2^53 lose digits in JSON parsers).' : '';
  return bad(`${key} must be a string; got ${typeName(v)}.${hint}`);
}

const INTEGER = /^-?\d{1,16}$/;
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const ISO_8601 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] ?? 0);
}

/**
 * Strict ISO-8601 / RFC 3339 date-time with an explicit zone, to milliseconds. Date.parse is
 * not used: it rolls 2024-02-30 over into March and reads zone-less strings in the server's
 * local time. Returns null when the string is not such a time.
 */
export function parseIsoTime(s: string): number | null {
  const m = ISO_8601.exec(s);
  if (m === null) return null;
  const [, ys, mos, ds, hs, mis, ss, frac, z, sign, ohs, oms] = m;
  const year = Number(ys);
  const month = Number(mos);
  const day = Number(ds);
  const hour = Number(hs);
  const minute = Number(mis);
  const second = ss === undefined ? 0 : Number(ss);
  const ms = frac === undefined ? 0 : Number(frac.slice(0, 3).padEnd(3, '0'));
  const offH = z !== undefined ? 0 : Number(ohs);
  const offM = z !== undefined || oms === undefined ? 0 : Number(oms);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  if (hour > 23 || minute > 59 || second > 59 || offH > 23 || offM > 59) return null;
  const d = new Date(0);
  // setUTCFullYear, not Date.UTC: Date.UTC maps years 0..99 to 1900..1999.
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, ms);
  const offsetMs = (offH * 60 + offM) * 60_000;
  return d.getTime() - (sign === '-' ? -offsetMs : offsetMs);
}

function readTime(key: string, v: unknown): number | Bad {
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) return v;
    return bad(`${key} must be a whole number of milliseconds since the Unix epoch; got a number that is not a safe integer.`);
  }
  if (typeof v === 'string') {
    if (INTEGER.test(v)) {
      const n = Number(v);
      if (Number.isSafeInteger(n)) return n;
      return bad(`${key} is a string of digits above 2^53. Send milliseconds since the Unix epoch.`);
    }
    const t = parseIsoTime(v);
    if (t !== null) return t;
    return bad(
      `${key} is a string that is neither milliseconds since the Unix epoch nor an ISO-8601 time with a zone. ` +
        'Send a number such as 1772323200000 or a string such as "2026-03-01T08:00:00+08:00".',
    );
  }
  return bad(`${key} must be milliseconds since the Unix epoch (a number) or an ISO-8601 string; got ${typeName(v)}.`);
}

function readNumber(key: string, v: unknown): number | Bad {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    if (DECIMAL.test(v)) return Number(v);
    // proto3 JSON spells non-finite doubles this way; validation then refuses them by name.
    if (v === 'NaN') return NaN;
    if (v === 'Infinity') return Infinity;
    if (v === '-Infinity') return -Infinity;
    return bad(`${key} is a string that is not a decimal number. Send a number such as 12.5.`);
  }
  return bad(`${key} must be a number; got ${typeName(v)}.`);
}

function readProps(key: string, v: unknown): Record<string, string> | Bad {
  const out = Object.create(null) as Record<string, string>;
  if (!isPlainObject(v)) return bad(`${key} must be an object of string values; got ${typeName(v)}.`);
  const keys = Object.keys(v);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    const pv = v[k];
    if (typeof pv === 'string') out[k] = pv;
    else if (typeof pv === 'number' || typeof pv === 'boolean') out[k] = String(pv);
    else {
      return bad(
        `${key} has a value (key of ${k.length} characters) that is ${typeName(pv)}. ` +
          'Prop values must be strings, numbers or booleans; flatten nested data or leave the property out.',
      );
    }
  }
  return out;
}

function emptyEvent(): AppEvent {
  return {
    eventId: '',
    userId: '',
    name: '',
    timeMs: 0,
    channel: '',
    props: Object.create(null) as Record<string, string>,
    value: 0,
    tz: '',
    deviceId: '',
    sentMs: 0,
  };
}

function build(obj: unknown): AppEvent | Bad {
  if (!isPlainObject(obj)) return bad(`An event must be a JSON object; got ${typeName(obj)}.`);
  const e = emptyEvent();
  const seen = new Map<keyof AppEvent, string>();
  for (const key of Object.keys(obj)) {
    const spec = BY_KEY.get(key);
    if (spec === undefined) {
      return bad(
        `Unknown field ${describeKey(key)}. Fields are event_id, user_id, name, time_ms, channel, props, value, tz, device_id, sent_ms (camelCase accepted).`,
      );
    }
    const other = seen.get(spec.field);
    if (other !== undefined) return bad(`Both ${other} and ${key} are set. Send one of them.`);
    seen.set(spec.field, key);
    const v = obj[key];
    if (v === null || v === undefined) continue; // proto3 JSON: null means "default"
    let r: string | number | Record<string, string> | Bad;
    switch (spec.kind) {
      case 'string':
        if ((r = readString(key, v)) instanceof Bad) return r;
        e[spec.field] = r;
        break;
      case 'time':
        if ((r = readTime(key, v)) instanceof Bad) return r;
        e[spec.field] = r;
        break;
      case 'number':
        if ((r = readNumber(key, v)) instanceof Bad) return r;
        e.value = r;
        break;
      case 'props':
        if ((r = readProps(key, v)) instanceof Bad) return r;
        e.props = r;
        break;
    }
  }
  return e;
}

/**
 * Reads one event from parsed JSON. Never throws; type errors come back as NUDGE_EVENT_BAD_JSON
 * naming the field. Accepts snake_case and camelCase names; time_ms/sent_ms as a number, a
 * string of digits or an ISO-8601 string with a zone; value as a number or a decimal string;
 * props values as strings, numbers or booleans (converted with String()).
 */
export function eventFromJson(obj: unknown): DecodeResult {
  let r: AppEvent | Bad;
  try {
    r = build(obj);
  } catch {
    // Only reachable with exotic inputs (a Proxy or a getter that throws); never echo those.
    r = bad('The event could not be read as JSON data. Send a plain JSON object.');
  }
  if (r instanceof Bad) {
    const rejection: EventRejection = { code: 'NUDGE_EVENT_BAD_JSON', message: r.message };
    return { ok: false, rejection };
  }
  return { ok: true, event: r };
}

/** The event as snake_case JSON, for printing and for `nudge produce` round trips. */
export function eventToJson(e: AppEvent): Record<string, unknown> {
  const props = Object.create(null) as Record<string, string>;
  for (const k of Object.keys(e.props)) props[k] = e.props[k] as string;
  return {
    event_id: e.eventId,
    user_id: e.userId,
    name: e.name,
    time_ms: e.timeMs,
    channel: e.channel,
    props,
    value: e.value,
    tz: e.tz,
    device_id: e.deviceId,
    sent_ms: e.sentMs,
  };
}
