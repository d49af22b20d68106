/**
 * The event contract as the rest of Nudge sees it (DESIGN.md §2.1): one plain TypeScript type,
 * a codec over the generated protobufjs code, and the catalogue of rejection codes that the
 * decoder, the validator (validate.ts) and the JSON reader (json.ts) return.
 *
 * Rejections are data, not exceptions: an event that cannot be used is routed to the DLQ with
 * its code, so decodeEvent() never throws, whatever the bytes.
 */
import { nudge } from './gen/event.js';

const Pb = nudge.v1.AppEvent;

/** One engagement event. Field names are the camelCase forms of proto/nudge/v1/event.proto. */
export interface AppEvent {
  eventId: string;
  userId: string;
  name: string;
  /** Event time, ms since the Unix epoch (UTC). */
  timeMs: number;
  channel: string;
  /**
   * Producer-defined properties. Always a null-prototype object (`Object.create(null)`), so a
   * `__proto__` or `constructor` key is plain data and cannot reach any prototype.
   */
  props: Record<string, string>;
  value: number;
  /** IANA time zone, "" = unknown. */
  tz: string;
  deviceId: string;
  /** When the producer sent it, ms since the epoch; 0 = unknown. */
  sentMs: number;
}

/**
 * Every reason an event can be refused, with its meaning. Codes are a contract (they go into
 * the DLQ header `nudge-error-code`, dashboards and alerts): add, never rename.
 */
export const EVENT_ERROR_CODES = {
  NUDGE_EVENT_TOO_LARGE: 'The encoded event is larger than maxEventBytes; refused before decoding.',
  NUDGE_EVENT_UNDECODABLE: 'The bytes are not a valid nudge.v1.AppEvent protobuf message.',
  NUDGE_EVENT_BAD_JSON: 'A JSON event is not an object, or a field has a type that cannot be used.',
  NUDGE_EVENT_MISSING_EVENT_ID: 'event_id is empty; every event needs a unique id.',
  NUDGE_EVENT_MISSING_USER_ID: 'user_id is empty; every event belongs to a user.',
  NUDGE_EVENT_MISSING_NAME: 'name is empty; every event needs a name such as "login".',
  NUDGE_EVENT_EVENT_ID_TOO_LONG: 'event_id is longer than maxEventIdLength characters.',
  NUDGE_EVENT_USER_ID_TOO_LONG: 'user_id is longer than maxUserIdLength characters.',
  NUDGE_EVENT_NAME_TOO_LONG: 'name is longer than maxNameLength characters.',
  NUDGE_EVENT_NAME_BAD_CHARS: 'name has a character outside [A-Za-z0-9_.:-].',
  NUDGE_EVENT_CHANNEL_TOO_LONG: 'channel is longer than maxChannelLength characters.',
  NUDGE_EVENT_CHANNEL_BAD_CHARS: 'channel has a character outside [A-Za-z0-9_.:-].',
  NUDGE_EVENT_DEVICE_ID_TOO_LONG: 'device_id is longer than maxDeviceIdLength characters.',
  NUDGE_EVENT_TOO_MANY_PROPS: 'props has more than maxProps entries.',
  NUDGE_EVENT_PROP_KEY_EMPTY: 'A prop key is the empty string.',
  NUDGE_EVENT_PROP_KEY_TOO_LONG: 'A prop key is longer than maxPropKeyLength characters.',
  NUDGE_EVENT_PROP_VALUE_TOO_LONG: 'A prop value is longer than maxPropValueLength characters.',
  NUDGE_EVENT_PROPS_TOO_LARGE: 'All prop keys and values together exceed maxPropsBytes UTF-8 bytes.',
  NUDGE_EVENT_MISSING_TIME: 'time_ms is 0 or absent; every event needs its event time.',
  NUDGE_EVENT_TIME_NEGATIVE: 'time_ms is negative.',
  NUDGE_EVENT_TIME_OUT_OF_RANGE: 'time_ms is before 2000-01-01 or not before 2100-01-01 UTC (wrong unit or clock).',
  NUDGE_EVENT_VALUE_NOT_FINITE: 'value is NaN or infinite.',
  NUDGE_EVENT_BAD_TZ: 'tz is not a time zone this runtime knows (IANA names such as "Asia/Shanghai").',
  NUDGE_EVENT_SENT_MS_OUT_OF_RANGE: 'sent_ms is negative or not before 2100-01-01 UTC.',
} as const;

export type EventErrorCode = keyof typeof EVENT_ERROR_CODES;

/** Why an event was refused. `message` never contains personal data (ids, prop values). */
export interface EventRejection {
  code: EventErrorCode;
  message: string;
}

export type DecodeResult = { ok: true; event: AppEvent } | { ok: false; rejection: EventRejection };

export interface DecodeLimits {
  /**
   * Largest encoded event accepted; larger inputs are refused before any parsing.
   * @default 65536
   */
  maxEventBytes: number;
}

export const DEFAULT_MAX_EVENT_BYTES = 64 * 1024;

/** Encodes an event to nudge.v1.AppEvent bytes. Fields at their default (""/0/{}) are omitted. */
export function encodeEvent(e: AppEvent): Uint8Array {
  return Pb.encode(e).finish();
}

interface LongLike {
  toNumber(): number;
}

/**
 * The generated typings say int64 is `number` (--force-number), but protobufjs 8.x returns a
 * Long from reader.int64() whenever the `long` package is installed, and the prototype default
 * of an absent int64 field is a Long too. Values beyond 2^53 lose precision; validation refuses
 * them anyway (any time after 2100 is out of range).
 */
function toMs(v: unknown): number {
  return typeof v === 'number' ? v : (v as LongLike).toNumber();
}

/**
 * Makes the decoded props map a null-prototype object, so that `__proto__`, `constructor` or
 * `toString` keys are plain data to every consumer.
 *
 * The generated decoder fills map fields into a fresh `{}`. Assigning `props["__proto__"] =
 * "x"` to a `{}` would hit the prototype setter (a string value is ignored, so the entry would be
 * lost, though nothing is polluted); the generated code avoids that by first defining the key as
 * an own property (util.makeProp), and tests/unit/decode-hostile.test.ts checks the entry
 * survives. Changing the prototype of that same object afterwards, rather than copying into
 * Object.create(null), keeps V8's fast properties: Object.create(null) objects start in
 * dictionary mode, which made building the map 3x and every Object.keys(props) later 2x slower
 * (measured: ~300 ns per 4-entry event on the decode path, ~100 ns per enumeration).
 */
function nullProto(props: Record<string, string>): Record<string, string> {
  return Object.setPrototypeOf(props, null) as Record<string, string>;
}

function reject(code: EventErrorCode, message: string): DecodeResult {
  return { ok: false, rejection: { code, message } };
}

/**
 * Turns a protobufjs exception into a reason in plain words. Only fixed strings come out: the
 * runtime's own messages carry offsets and, for some errors, could carry decoded content.
 */
function describeDecodeFailure(err: unknown): string {
  if (err instanceof TypeError && (err as { code?: unknown }).code === 'ERR_ENCODING_INVALID_ENCODED_DATA') {
    return 'a string field is not valid UTF-8';
  }
  const msg = err instanceof Error ? err.message : '';
  if (msg.startsWith('index out of range')) return 'a field or length runs past the end of the data (truncated?)';
  if (msg.startsWith('max depth exceeded') || msg.startsWith('Maximum call stack')) {
    return 'groups are nested deeper than the limit of 100';
  }
  if (msg.startsWith('invalid wire type')) return 'a field has an invalid wire type';
  if (msg.startsWith('invalid tag') || msg.startsWith('illegal tag')) return 'a field tag is invalid';
  if (msg.includes('end group')) return 'a group is not closed properly';
  if (msg.startsWith('invalid varint') || msg.startsWith('invalid length')) return 'a number is encoded with too many bytes';
  return 'the protobuf wire format is malformed';
}

/**
 * Decodes nudge.v1.AppEvent bytes. Never throws. Inputs over `limits.maxEventBytes` are refused
 * before parsing; malformed input (truncated, bad wire types, invalid UTF-8, groups nested past
 * the runtime's recursion limit of 100 such as protobufjs #2121's run of 0x0b bytes) becomes
 * NUDGE_EVENT_UNDECODABLE. Unknown fields are skipped (forward compatibility).
 * The result is not validated: see parseEvent() in validate.ts.
 */
export function decodeEvent(bytes: Uint8Array, limits?: DecodeLimits): DecodeResult {
  if (!(bytes instanceof Uint8Array)) {
    return reject('NUDGE_EVENT_UNDECODABLE', 'The event is not a byte array. Pass the Kafka message value (a Buffer or Uint8Array).');
  }
  const max = limits === undefined ? DEFAULT_MAX_EVENT_BYTES : limits.maxEventBytes;
  if (bytes.length > max) {
    return reject(
      'NUDGE_EVENT_TOO_LARGE',
      `The event is ${bytes.length} bytes; the limit is ${max} (maxEventBytes). ` +
        'Move bulky data out of props, or raise maxEventBytes if events this large are expected.',
    );
  }
  let m: nudge.v1.AppEvent;
  try {
    m = Pb.decode(bytes);
  } catch (err) {
    return reject(
      'NUDGE_EVENT_UNDECODABLE',
      `The ${bytes.length} bytes are not a valid nudge.v1.AppEvent: ${describeDecodeFailure(err)}. ` +
        'Check that the producer serialises nudge.v1.AppEvent (proto/nudge/v1/event.proto) and sends the whole message.',
    );
  }
  return {
    ok: true,
    event: {
      eventId: m.eventId,
      userId: m.userId,
      name: m.name,
      timeMs: toMs(m.timeMs),
      channel: m.channel,
      props: nullProto(m.props),
      value: m.value,
      tz: m.tz,
      deviceId: m.deviceId,
      sentMs: toMs(m.sentMs),
    },
  };
}
