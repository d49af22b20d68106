import { describe, expect, it } from 'vitest';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import {
  DEFAULT_EVENT_LIMITS,
  EVENT_ERROR_CODES,
  isKnownTimeZone,
  parseEvent,
  tzCacheSize,
  validateEvent,
  type EventErrorCode,
  type EventLimits,
} from '../../src/contract/validate.js';

const NOW = 1767225600000; // 2026-01-01T00:00:00Z
// Canary personal data planted in the fields a message must never quote.
const PHONE = '+8613800138000';
const PERSON = 'Zhang Wei';
const CANARIES = [PHONE, PERSON, '8613800138000', 'Zhang'];

function props(entries: Record<string, string> = {}): Record<string, string> {
  return Object.assign(Object.create(null) as Record<string, string>, entries);
}

function valid(overrides: Partial<AppEvent> = {}): AppEvent {
  return {
    eventId: 'evt-0001',
    userId: PHONE,
    name: 'transfer_started',
    timeMs: 1767225600000,
    channel: 'app',
    props: props({ contact: PERSON, phone: PHONE }),
    value: 12.5,
    tz: 'Asia/Shanghai',
    deviceId: `dev-${PERSON}`,
    sentMs: 1767225600100,
    ...overrides,
  };
}

function check(e: AppEvent, limits?: EventLimits) {
  return validateEvent(e, limits, NOW);
}

/** Asserts the code, and that the message quotes no canary and no planted value. */
function expectRejected(e: AppEvent, code: EventErrorCode, ...alsoAbsent: string[]): string {
  const r = check(e);
  expect(r?.code).toBe(code);
  const message = r?.message ?? '';
  for (const secret of [...CANARIES, ...alsoAbsent]) expect(message).not.toContain(secret);
  // Every message says what to do next.
  expect(message).toMatch(/\b(Set|Send|Use|Shorten|Give|Put|Prop keys are|Event names are|Move)\b/);
  return message;
}

const chars = (n: number, c = 'a') => c.repeat(n);

describe('validateEvent', () => {
  it('accepts a complete event carrying personal data in the allowed places', () => {
    expect(check(valid())).toBeNull();
  });

  it('has the documented default limits', () => {
    expect(DEFAULT_EVENT_LIMITS).toEqual({
      maxEventBytes: 65536,
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
    expect(Object.isFrozen(DEFAULT_EVENT_LIMITS)).toBe(true);
  });

  describe('required strings', () => {
    it('event_id: required, at most 128 characters', () => {
      expectRejected(valid({ eventId: '' }), 'NUDGE_EVENT_MISSING_EVENT_ID');
      expect(check(valid({ eventId: chars(128) }))).toBeNull();
      const m = expectRejected(valid({ eventId: PHONE + chars(115) }), 'NUDGE_EVENT_EVENT_ID_TOO_LONG');
      expect(m).toContain('129 characters');
      expect(m).toContain('128');
    });

    it('user_id: required, at most 128 characters', () => {
      expectRejected(valid({ userId: '' }), 'NUDGE_EVENT_MISSING_USER_ID');
      expect(check(valid({ userId: chars(128) }))).toBeNull();
      const m = expectRejected(valid({ userId: PHONE.repeat(20) + PERSON }), 'NUDGE_EVENT_USER_ID_TOO_LONG');
      expect(m).toBe('user_id is 289 characters; the limit is 128. Shorten it or hash it before producing.');
    });

    it('name: required, at most 64 characters from [A-Za-z0-9_.:-]', () => {
      expectRejected(valid({ name: '' }), 'NUDGE_EVENT_MISSING_NAME');
      expect(check(valid({ name: chars(64) }))).toBeNull();
      expectRejected(valid({ name: chars(65) }), 'NUDGE_EVENT_NAME_TOO_LONG');
      expect(check(valid({ name: 'Transfer.done:v2-beta_1' }))).toBeNull();
      const m = expectRejected(valid({ name: `login ${PERSON}` }), 'NUDGE_EVENT_NAME_BAD_CHARS');
      expect(m).toContain('position 5 (U+0020)');
      expectRejected(valid({ name: 'login\u0000' }), 'NUDGE_EVENT_NAME_BAD_CHARS');
      expect(expectRejected(valid({ name: 'pay🎉' }), 'NUDGE_EVENT_NAME_BAD_CHARS')).toContain('U+1F389');
      expectRejected(valid({ name: 'café' }), 'NUDGE_EVENT_NAME_BAD_CHARS');
      expectRejected(valid({ name: 'a/b' }), 'NUDGE_EVENT_NAME_BAD_CHARS');
    });
  });

  describe('optional strings', () => {
    it('channel: may be empty, at most 32 characters from [A-Za-z0-9_.:-]', () => {
      expect(check(valid({ channel: '' }))).toBeNull();
      expect(check(valid({ channel: chars(32) }))).toBeNull();
      expectRejected(valid({ channel: chars(33) }), 'NUDGE_EVENT_CHANNEL_TOO_LONG');
      expect(check(valid({ channel: 'mini_program' }))).toBeNull();
      expectRejected(valid({ channel: `web ${PHONE}` }), 'NUDGE_EVENT_CHANNEL_BAD_CHARS');
    });

    it('device_id: may be empty, at most 128 characters', () => {
      expect(check(valid({ deviceId: '' }))).toBeNull();
      expect(check(valid({ deviceId: chars(128) }))).toBeNull();
      expectRejected(valid({ deviceId: PERSON + chars(120) }), 'NUDGE_EVENT_DEVICE_ID_TOO_LONG');
    });
  });

  describe('props', () => {
    const many = (n: number) => props(Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v'])));

    it('at most 32 entries', () => {
      expect(check(valid({ props: many(32) }))).toBeNull();
      expect(expectRejected(valid({ props: many(33) }), 'NUDGE_EVENT_TOO_MANY_PROPS')).toContain('33 entries');
      expect(check(valid({ props: props() }))).toBeNull();
    });

    it('keys: not empty, at most 64 characters, never quoted', () => {
      expect(check(valid({ props: props({ [chars(64)]: 'v' }) }))).toBeNull();
      const m = expectRejected(valid({ props: props({ [`${PERSON}${chars(56)}`]: 'v' }) }), 'NUDGE_EVENT_PROP_KEY_TOO_LONG');
      expect(m).toContain('65 characters');
      expectRejected(valid({ props: props({ '': 'v' }) }), 'NUDGE_EVENT_PROP_KEY_EMPTY');
    });

    it('values: at most 512 characters, never quoted (nor their key)', () => {
      expect(check(valid({ props: props({ note: chars(512) }) }))).toBeNull();
      expect(check(valid({ props: props({ note: '' }) }))).toBeNull();
      const key = `${PHONE}_contact`;
      const m = expectRejected(valid({ props: props({ [key]: PERSON + chars(504) }) }), 'NUDGE_EVENT_PROP_VALUE_TOO_LONG', key);
      expect(m).toContain('513 characters');
    });

    it('all keys and values: at most 4096 bytes of UTF-8', () => {
      // 8 keys of 2 bytes + 8 values of 170 x "中" (3 bytes each) = 16 + 4080 = 4096 bytes.
      const cjk = (extra: string) =>
        props(Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`a${i}`, '中'.repeat(170) + (i === 0 ? extra : '')])));
      expect(check(valid({ props: cjk('') }))).toBeNull();
      const m = expectRejected(valid({ props: cjk('x') }), 'NUDGE_EVENT_PROPS_TOO_LARGE', '中');
      expect(m).toContain('4097 bytes');
      // ASCII: 8 x (2 + 510) = 4096 bytes exactly, then one more.
      const ascii = (extra: string) =>
        props(Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`b${i}`, chars(510) + (i === 7 ? extra : '')])));
      expect(check(valid({ props: ascii('') }))).toBeNull();
      expectRejected(valid({ props: ascii('y') }), 'NUDGE_EVENT_PROPS_TOO_LARGE');
      // 4-byte characters (2 UTF-16 units each): 8 x (2 + 127 x 4) = 4080 bytes is under.
      const emoji = props(Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`c${i}`, '🎉'.repeat(127)])));
      expect(check(valid({ props: emoji }))).toBeNull();
    });
  });

  describe('times and numbers', () => {
    it('time_ms: required, not negative, within [2000-01-01, 2100-01-01)', () => {
      expectRejected(valid({ timeMs: 0 }), 'NUDGE_EVENT_MISSING_TIME');
      expectRejected(valid({ timeMs: -1 }), 'NUDGE_EVENT_TIME_NEGATIVE');
      expect(check(valid({ timeMs: 946684800000 }))).toBeNull(); // 2000-01-01T00:00:00.000Z
      expectRejected(valid({ timeMs: 946684799999 }), 'NUDGE_EVENT_TIME_OUT_OF_RANGE');
      expect(check(valid({ timeMs: 4102444799999 }))).toBeNull(); // 2099-12-31T23:59:59.999Z
      expectRejected(valid({ timeMs: 4102444800000 }), 'NUDGE_EVENT_TIME_OUT_OF_RANGE');
      expectRejected(valid({ timeMs: NaN }), 'NUDGE_EVENT_TIME_OUT_OF_RANGE');
      expectRejected(valid({ timeMs: Number.MAX_SAFE_INTEGER }), 'NUDGE_EVENT_TIME_OUT_OF_RANGE');
    });

    it('does not reject moderate future skew (the pipeline clamps it) and ignores nowMs', () => {
      const inAYear = NOW + 365 * 86_400_000;
      expect(validateEvent(valid({ timeMs: inAYear }), DEFAULT_EVENT_LIMITS, NOW)).toBeNull();
      expect(validateEvent(valid(), DEFAULT_EVENT_LIMITS, 0)).toBeNull();
    });

    it('names the likely unit mistake for an absurd time', () => {
      expect(expectRejected(valid({ timeMs: 1767225600 }), 'NUDGE_EVENT_TIME_OUT_OF_RANGE')).toContain('seconds');
      expect(expectRejected(valid({ timeMs: 1767225600000000 }), 'NUDGE_EVENT_TIME_OUT_OF_RANGE')).toContain('microseconds');
      expect(expectRejected(valid({ timeMs: 1767225600000000000 }), 'NUDGE_EVENT_TIME_OUT_OF_RANGE')).toContain('nanoseconds');
      expect(expectRejected(valid({ timeMs: 4102444800000 }), 'NUDGE_EVENT_TIME_OUT_OF_RANGE')).toContain('2100-01-01T00:00:00.000Z');
    });

    it('value: finite', () => {
      expect(check(valid({ value: 0 }))).toBeNull();
      expect(check(valid({ value: -1e308 }))).toBeNull();
      expectRejected(valid({ value: NaN }), 'NUDGE_EVENT_VALUE_NOT_FINITE');
      expectRejected(valid({ value: Infinity }), 'NUDGE_EVENT_VALUE_NOT_FINITE');
      expectRejected(valid({ value: -Infinity }), 'NUDGE_EVENT_VALUE_NOT_FINITE');
    });

    it('sent_ms: 0 (unknown) or within [0, 2100-01-01)', () => {
      expect(check(valid({ sentMs: 0 }))).toBeNull();
      expect(check(valid({ sentMs: 4102444799999 }))).toBeNull();
      expect(expectRejected(valid({ sentMs: -1 }), 'NUDGE_EVENT_SENT_MS_OUT_OF_RANGE')).toContain('negative');
      expectRejected(valid({ sentMs: 4102444800000 }), 'NUDGE_EVENT_SENT_MS_OUT_OF_RANGE');
    });
  });

  describe('tz', () => {
    it('accepts "" (unknown) and IANA zones, rejects anything else without quoting it', () => {
      expect(check(valid({ tz: '' }))).toBeNull();
      for (const tz of ['Asia/Shanghai', 'UTC', 'America/Argentina/ComodRivadavia', 'Europe/Berlin']) {
        expect(check(valid({ tz })), tz).toBeNull();
      }
      expectRejected(valid({ tz: 'Mars/Olympus_Mons' }), 'NUDGE_EVENT_BAD_TZ', 'Mars');
      expectRejected(valid({ tz: `${PERSON}/${PHONE}` }), 'NUDGE_EVENT_BAD_TZ');
      expectRejected(valid({ tz: 'Asia/' + chars(60) }), 'NUDGE_EVENT_BAD_TZ');
    });

    it('keeps the verdict cache bounded under a flood of distinct zones', () => {
      for (let i = 0; i < 1500; i++) isKnownTimeZone(`Nowhere/Zone_${i}`);
      expect(tzCacheSize()).toBeLessThanOrEqual(1000);
      expect(isKnownTimeZone('Asia/Tokyo')).toBe(true);
      expect(isKnownTimeZone('Nowhere/Zone_1499')).toBe(false);
    });
  });

  it('uses the limits it is given (the config may change them)', () => {
    const strict: EventLimits = { ...DEFAULT_EVENT_LIMITS, maxUserIdLength: 10, maxProps: 1 };
    const oneProp = props({ a: '1' });
    expect(check(valid({ userId: 'u-12345678', props: oneProp }), strict)).toBeNull();
    expect(check(valid({ userId: 'u-123456789', props: oneProp }), strict)?.code).toBe('NUDGE_EVENT_USER_ID_TOO_LONG');
    expect(check(valid({ userId: 'u-1', props: props({ a: '1', b: '2' }) }), strict)?.code).toBe('NUDGE_EVENT_TOO_MANY_PROPS');
  });
});

describe('EVENT_ERROR_CODES', () => {
  it('lists every code with a one-line meaning', () => {
    for (const [code, meaning] of Object.entries(EVENT_ERROR_CODES)) {
      expect(code).toMatch(/^NUDGE_EVENT_[A-Z_]+$/);
      expect(meaning.length).toBeGreaterThan(10);
      expect(meaning).not.toContain('\n');
    }
  });

  it('is the documented set (codes are a contract: add, never rename)', () => {
    expect(Object.keys(EVENT_ERROR_CODES).sort()).toEqual([
      'NUDGE_EVENT_BAD_JSON',
      'NUDGE_EVENT_BAD_TZ',
      'NUDGE_EVENT_CHANNEL_BAD_CHARS',
      'NUDGE_EVENT_CHANNEL_TOO_LONG',
      'NUDGE_EVENT_DEVICE_ID_TOO_LONG',
      'NUDGE_EVENT_EVENT_ID_TOO_LONG',
      'NUDGE_EVENT_MISSING_EVENT_ID',
      'NUDGE_EVENT_MISSING_NAME',
      'NUDGE_EVENT_MISSING_TIME',
      'NUDGE_EVENT_MISSING_USER_ID',
      'NUDGE_EVENT_NAME_BAD_CHARS',
      'NUDGE_EVENT_NAME_TOO_LONG',
      'NUDGE_EVENT_PROPS_TOO_LARGE',
      'NUDGE_EVENT_PROP_KEY_EMPTY',
      'NUDGE_EVENT_PROP_KEY_TOO_LONG',
      'NUDGE_EVENT_PROP_VALUE_TOO_LONG',
      'NUDGE_EVENT_SENT_MS_OUT_OF_RANGE',
      'NUDGE_EVENT_TIME_NEGATIVE',
      'NUDGE_EVENT_TIME_OUT_OF_RANGE',
      'NUDGE_EVENT_TOO_LARGE',
      'NUDGE_EVENT_TOO_MANY_PROPS',
      'NUDGE_EVENT_UNDECODABLE',
      'NUDGE_EVENT_USER_ID_TOO_LONG',
      'NUDGE_EVENT_VALUE_NOT_FINITE',
    ]);
  });
});

describe('parseEvent', () => {
  it('decodes and validates', () => {
    const e = valid();
    const r = parseEvent(encodeEvent(e), DEFAULT_EVENT_LIMITS, NOW);
    expect(r.ok && { ...r.event, props: { ...r.event.props } }).toEqual({ ...e, props: { contact: PERSON, phone: PHONE } });
  });

  it('returns the validation rejection for bytes that decode', () => {
    const r = parseEvent(encodeEvent(valid({ userId: '' })), DEFAULT_EVENT_LIMITS, NOW);
    expect(r.ok ? null : r.rejection.code).toBe('NUDGE_EVENT_MISSING_USER_ID');
  });

  it('returns the decode rejection for bytes that do not', () => {
    const r = parseEvent(new Uint8Array([0x0a, 0x05, 0x61]), DEFAULT_EVENT_LIMITS, NOW);
    expect(r.ok ? null : r.rejection.code).toBe('NUDGE_EVENT_UNDECODABLE');
  });

  it('applies maxEventBytes from the limits', () => {
    const bytes = encodeEvent(valid());
    const exact = { ...DEFAULT_EVENT_LIMITS, maxEventBytes: bytes.length };
    expect(parseEvent(bytes, exact, NOW).ok).toBe(true);
    const r = parseEvent(bytes, { ...exact, maxEventBytes: bytes.length - 1 }, NOW);
    expect(r.ok ? null : r.rejection.code).toBe('NUDGE_EVENT_TOO_LARGE');
  });
});
