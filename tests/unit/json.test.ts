import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AppEvent, DecodeResult } from '../../src/contract/event.js';
import { eventFromJson, eventToJson, parseIsoTime } from '../../src/contract/json.js';
import { DEFAULT_EVENT_LIMITS, validateEvent } from '../../src/contract/validate.js';

const PHONE = '+8613800138000';

function ok(r: DecodeResult): AppEvent {
  if (!r.ok) throw new Error(`${r.rejection.code}: ${r.rejection.message}`);
  return r.event;
}

function badJson(r: DecodeResult): string {
  if (r.ok) throw new Error('expected NUDGE_EVENT_BAD_JSON, got an event');
  expect(r.rejection.code).toBe('NUDGE_EVENT_BAD_JSON');
  return r.rejection.message;
}

const plain = (e: AppEvent) => ({ ...e, props: { ...e.props } });

const snake = {
  event_id: 'evt-1',
  user_id: 'u-1',
  name: 'transfer_started',
  time_ms: 1767225600123,
  channel: 'app',
  props: { page: 'loan_detail', amount: 12, vip: true },
  value: 2500.75,
  tz: 'Asia/Shanghai',
  device_id: 'dev-1',
  sent_ms: 1767225600200,
};

const expected: AppEvent = {
  eventId: 'evt-1',
  userId: 'u-1',
  name: 'transfer_started',
  timeMs: 1767225600123,
  channel: 'app',
  props: { page: 'loan_detail', amount: '12', vip: 'true' },
  value: 2500.75,
  tz: 'Asia/Shanghai',
  deviceId: 'dev-1',
  sentMs: 1767225600200,
};

describe('eventFromJson', () => {
  it('reads snake_case names, coercing prop numbers and booleans to strings', () => {
    const e = ok(eventFromJson(snake));
    expect(plain(e)).toEqual(expected);
    expect(Object.getPrototypeOf(e.props)).toBeNull();
    expect(validateEvent(e, DEFAULT_EVENT_LIMITS, 0)).toBeNull();
  });

  it('reads camelCase names', () => {
    const camel = {
      eventId: 'evt-1',
      userId: 'u-1',
      name: 'transfer_started',
      timeMs: 1767225600123,
      channel: 'app',
      props: { page: 'loan_detail', amount: 12, vip: true },
      value: 2500.75,
      tz: 'Asia/Shanghai',
      deviceId: 'dev-1',
      sentMs: 1767225600200,
    };
    expect(plain(ok(eventFromJson(camel)))).toEqual(expected);
  });

  it('fills absent and null fields with the proto defaults', () => {
    const e = ok(eventFromJson({ event_id: 'e', user_id: 'u', name: 'login', time_ms: 1767225600000, tz: null, props: null }));
    expect(plain(e)).toEqual({
      eventId: 'e',
      userId: 'u',
      name: 'login',
      timeMs: 1767225600000,
      channel: '',
      props: {},
      value: 0,
      tz: '',
      deviceId: '',
      sentMs: 0,
    });
  });

  it('refuses the same field under both names', () => {
    expect(badJson(eventFromJson({ ...snake, userId: 'u-1' }))).toBe('Both user_id and userId are set. Send one of them.');
  });

  it('refuses unknown fields, quoting identifier-like names only', () => {
    expect(badJson(eventFromJson({ ...snake, deviceID: 'x' }))).toContain('Unknown field "deviceID"');
    const m = badJson(eventFromJson({ ...snake, [PHONE]: 1 }));
    expect(m).toContain('a key of 14 characters');
    expect(m).not.toContain(PHONE);
    // Object.prototype members are not fields.
    for (const key of ['toString', 'constructor', 'hasOwnProperty']) {
      expect(badJson(eventFromJson({ ...snake, [key]: 'x' }))).toContain('Unknown field');
    }
  });

  it('refuses a top-level __proto__ key from JSON.parse and does not touch prototypes', () => {
    const parsed: unknown = JSON.parse(`{"event_id":"e","__proto__":{"polluted":"yes"}}`);
    expect(badJson(eventFromJson(parsed))).toContain('a key of 9 characters');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  describe('time_ms and sent_ms', () => {
    it('accept milliseconds as a number or a string of digits', () => {
      expect(ok(eventFromJson({ ...snake, time_ms: '1767225600123' })).timeMs).toBe(1767225600123);
      expect(ok(eventFromJson({ ...snake, sent_ms: '0' })).sentMs).toBe(0);
    });

    it('accept ISO-8601 with a zone', () => {
      const cases: Array<[string, number]> = [
        ['2026-01-01T00:00:00Z', 1767225600000],
        ['2026-01-01T00:00:00.123Z', 1767225600123],
        ['2026-01-01T08:00:00+08:00', 1767225600000],
        ['2026-01-01T08:00:00+0800', 1767225600000],
        ['2026-01-01T08:00+08', 1767225600000],
        ['2025-12-31T19:00:00-05:00', 1767225600000],
        ['2026-01-01 00:00:00.999999Z', 1767225600999],
        ['2024-02-29T12:00:00Z', 1709208000000],
        ['2000-01-01T00:00:00Z', 946684800000],
      ];
      for (const [iso, ms] of cases) {
        expect(parseIsoTime(iso), iso).toBe(ms);
        expect(ok(eventFromJson({ ...snake, time_ms: iso })).timeMs, iso).toBe(ms);
      }
    });

    it('refuse impossible dates, zone-less times and other formats', () => {
      for (const s of [
        '2025-02-29T00:00:00Z', // not a leap year (Date.parse would roll over to March 1)
        '2026-02-30T00:00:00Z',
        '2026-13-01T00:00:00Z',
        '2026-01-01T24:00:00Z',
        '2026-01-01T23:60:00Z',
        '2026-01-01T23:59:60Z',
        '2026-01-01T00:00:00', // no zone: would depend on the server's zone
        '2026-01-01',
        'Thu, 01 Jan 2026 00:00:00 GMT',
        '1767225600123.5',
        '',
        '99999999999999999', // 17 digits
      ]) {
        expect(parseIsoTime(s), s).toBeNull();
        const m = badJson(eventFromJson({ ...snake, time_ms: s }));
        expect(m, s).toContain('time_ms');
        if (s.length > 3) expect(m).not.toContain(s);
      }
    });

    it('refuse non-integers, unsafe integers and other types', () => {
      expect(badJson(eventFromJson({ ...snake, time_ms: 1767225600123.5 }))).toContain('time_ms must be a whole number');
      const { time_ms: _drop, ...noTime } = snake;
      expect(badJson(eventFromJson({ ...noTime, timeMs: 2 ** 53 }))).toContain('timeMs must be a whole number');
      expect(badJson(eventFromJson({ ...snake, time_ms: '9007199254740993' }))).toContain('above 2^53');
      expect(badJson(eventFromJson({ ...snake, sent_ms: true }))).toBe(
        'sent_ms must be milliseconds since the Unix epoch (a number) or an ISO-8601 string; got a boolean.',
      );
      expect(badJson(eventFromJson({ ...snake, time_ms: [1] }))).toContain('got an array');
    });
  });

  describe('value', () => {
    it('accepts numbers and decimal strings', () => {
      expect(ok(eventFromJson({ ...snake, value: '12.50' })).value).toBe(12.5);
      expect(ok(eventFromJson({ ...snake, value: '-3e2' })).value).toBe(-300);
      expect(ok(eventFromJson({ ...snake, value: '.5' })).value).toBe(0.5);
      expect(ok(eventFromJson({ ...snake, value: 0 })).value).toBe(0);
    });

    it('reads the proto3 JSON spellings of non-finite numbers, which validation then refuses', () => {
      const e = ok(eventFromJson({ ...snake, value: 'Infinity' }));
      expect(e.value).toBe(Infinity);
      expect(validateEvent(e, DEFAULT_EVENT_LIMITS, 0)?.code).toBe('NUDGE_EVENT_VALUE_NOT_FINITE');
      expect(ok(eventFromJson({ ...snake, value: 'NaN' })).value).toBeNaN();
    });

    it('refuses other strings and types', () => {
      for (const v of ['0x10', '', ' 1', '1,5', 'twelve', '1e']) {
        expect(badJson(eventFromJson({ ...snake, value: v })), v).toContain('value is a string that is not a decimal number');
      }
      expect(badJson(eventFromJson({ ...snake, value: {} }))).toBe('value must be a number; got an object.');
      expect(badJson(eventFromJson({ ...snake, value: false }))).toBe('value must be a number; got a boolean.');
    });
  });

  describe('string fields', () => {
    it('refuse numbers (precision) and other types, naming the field as sent', () => {
      expect(badJson(eventFromJson({ ...snake, user_id: 12345 }))).toBe(
        'user_id must be a string; got a number. Quote it in JSON (integers above 2^53 lose digits in JSON parsers).',
      );
      const { event_id: _drop, ...rest } = snake;
      expect(badJson(eventFromJson({ ...rest, eventId: ['e'] }))).toBe('eventId must be a string; got an array.');
      expect(badJson(eventFromJson({ ...snake, tz: { zone: 'x' } }))).toContain('tz must be a string; got an object');
    });
  });

  describe('props', () => {
    it('must be an object', () => {
      expect(badJson(eventFromJson({ ...snake, props: ['a'] }))).toBe('props must be an object of string values; got an array.');
      expect(badJson(eventFromJson({ ...snake, props: 'a=b' }))).toContain('got a string');
    });

    it('refuses nested values and nulls without quoting the key', () => {
      const key = `contact_${PHONE}`;
      for (const v of [null, { a: 1 }, [1]]) {
        const m = badJson(eventFromJson({ ...snake, props: { [key]: v } }));
        expect(m).toContain(`key of ${key.length} characters`);
        expect(m).not.toContain(PHONE);
      }
    });

    it('keeps a __proto__ key from JSON.parse as plain data in a null-prototype object', () => {
      const before = Object.getOwnPropertyNames(Object.prototype).sort();
      const parsed: unknown = JSON.parse(
        `{"event_id":"e","user_id":"u","name":"n","time_ms":1767225600000,"props":{"__proto__":"x","constructor":"y","__defineGetter__":"z"}}`,
      );
      const e = ok(eventFromJson(parsed));
      expect(Object.getPrototypeOf(e.props)).toBeNull();
      expect(Object.keys(e.props)).toEqual(['__proto__', 'constructor', '__defineGetter__']);
      expect(e.props['__proto__']).toBe('x');
      expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(before);
      // An object-valued __proto__ (the usual pollution payload) is refused, not merged.
      const evil: unknown = JSON.parse(`{"event_id":"e","props":{"__proto__":{"polluted":"yes"}}}`);
      badJson(eventFromJson(evil));
      expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    });
  });

  it('refuses non-objects and class instances', () => {
    for (const v of [null, undefined, 'x', 42, [snake], new Date(), new Map()]) {
      expect(badJson(eventFromJson(v))).toMatch(/^An event must be a JSON object; got /);
    }
    expect(ok(eventFromJson(Object.assign(Object.create(null) as object, snake))).userId).toBe('u-1');
  });

  it('never throws, even on getters that throw', () => {
    const hostile = Object.defineProperty({ ...snake }, 'user_id', {
      enumerable: true,
      get() {
        throw new Error(PHONE);
      },
    });
    const m = badJson(eventFromJson(hostile));
    expect(m).not.toContain(PHONE);
    fc.assert(
      fc.property(fc.anything({ withNullPrototype: true, withMap: true, withSet: true, withBigInt: true }), (v) => {
        const r = eventFromJson(v);
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const r = eventFromJson(JSON.parse(JSON.stringify({ ...snake, props: { k: v } })));
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: 500 },
    );
  });
});

describe('eventToJson', () => {
  it('prints snake_case with every field', () => {
    const e = ok(eventFromJson(snake));
    expect(JSON.parse(JSON.stringify(eventToJson(e)))).toEqual({ ...snake, props: { page: 'loan_detail', amount: '12', vip: 'true' } });
  });

  it('round-trips through eventFromJson, __proto__ prop included', () => {
    const props = Object.create(null) as Record<string, string>;
    props['__proto__'] = 'data';
    props['page'] = 'home';
    const e: AppEvent = { ...expected, props };
    const json = JSON.stringify(eventToJson(e));
    expect(json).toContain('"__proto__":"data"');
    const back = ok(eventFromJson(JSON.parse(json)));
    expect(plain(back)).toEqual(plain(e));
  });

  it('round-trips arbitrary events (500 runs)', () => {
    const str = fc.string({ unit: 'binary', maxLength: 20 });
    fc.assert(
      fc.property(
        fc.record({
          eventId: str,
          userId: str,
          name: str,
          timeMs: fc.maxSafeInteger(),
          channel: str,
          props: fc.dictionary(str, str, { maxKeys: 5 }),
          value: fc.double({ noNaN: true, noDefaultInfinity: true }),
          tz: str,
          deviceId: str,
          sentMs: fc.maxSafeInteger(),
        }),
        (e) => {
          const back = ok(eventFromJson(JSON.parse(JSON.stringify(eventToJson(e)))));
          // JSON has no -0.
          expect(plain(back)).toEqual({ ...plain(e), value: Object.is(e.value, -0) ? 0 : e.value });
        },
      ),
      { numRuns: 500 },
    );
  });
});
