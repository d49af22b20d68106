import { describe, expect, it } from 'vitest';
import { decodeEvent, encodeEvent, EVENT_ERROR_CODES, type AppEvent, type DecodeResult } from '../../src/contract/event.js';
import { nudge } from '../../src/contract/gen/event.js';

// Known-bad inputs for the event decoder (the shared research brief reliability.md §5.6, goal G10). decodeEvent must
// return a typed rejection for all of them: never throw, never overflow the stack, never echo
// the bytes, never let a map key reach a prototype.

const PHONE = '+8613800138000';

function props(entries: Record<string, string> = {}): Record<string, string> {
  return Object.assign(Object.create(null) as Record<string, string>, entries);
}

const sample: AppEvent = {
  eventId: 'evt-hostile-1',
  userId: PHONE,
  name: 'transfer_started',
  timeMs: 1767225600123,
  channel: 'app',
  props: props({ page: 'loan_detail', contact: 'Zhang Wei', amount_band: '1k-5k', ab: 'B' }),
  value: 99.5,
  tz: 'Asia/Shanghai',
  deviceId: 'dev-1',
  sentMs: 1767225600200,
};
const sampleBytes = encodeEvent(sample);

/** Calls decodeEvent, failing the test (instead of crashing it) if it throws. */
function decode(bytes: unknown, maxEventBytes?: number): DecodeResult {
  let r: DecodeResult | undefined;
  expect(() => {
    r = decodeEvent(bytes as Uint8Array, maxEventBytes === undefined ? undefined : { maxEventBytes });
  }).not.toThrow();
  return r as DecodeResult;
}

function expectUndecodable(bytes: Uint8Array, reason?: RegExp): string {
  const r = decode(bytes);
  if (r.ok) throw new Error('expected a rejection, got an event');
  expect(r.rejection.code).toBe('NUDGE_EVENT_UNDECODABLE');
  if (reason) expect(r.rejection.message).toMatch(reason);
  return r.rejection.message;
}

const bytes = (...parts: Array<number | number[] | Uint8Array>) =>
  new Uint8Array(parts.flatMap((p) => (typeof p === 'number' ? [p] : [...p])));
const ascii = (s: string) => [...Buffer.from(s, 'utf8')];

describe('decodeEvent on hostile input', () => {
  it('a valid event round-trips (the baseline the other cases break)', () => {
    const r = decode(sampleBytes);
    expect(r.ok && { ...r.event, props: { ...r.event.props } }).toEqual({ ...sample, props: { ...sample.props } });
    expect(r.ok && typeof r.event.timeMs).toBe('number');
  });

  it('every truncation of a valid event is refused or decodes to a subset of its fields', () => {
    let refused = 0;
    for (let len = 0; len < sampleBytes.length; len++) {
      const r = decode(sampleBytes.subarray(0, len));
      if (!r.ok) {
        refused++;
        expect(r.rejection.code).toBe('NUDGE_EVENT_UNDECODABLE');
        continue;
      }
      // A cut at a field boundary is a shorter valid message: fields are either complete or
      // absent (at their default), never partial.
      const e = r.event;
      for (const k of ['eventId', 'userId', 'name', 'channel', 'tz', 'deviceId'] as const) {
        expect([sample[k], '']).toContain(e[k]);
      }
      expect([sample.timeMs, 0]).toContain(e.timeMs);
      expect([sample.value, 0]).toContain(e.value);
      expect([sample.sentMs, 0]).toContain(e.sentMs);
      for (const [k, v] of Object.entries(e.props)) expect(sample.props[k]).toBe(v);
    }
    // 10 fields (4 map entries) leave 13 boundaries in ~130 bytes: most cuts must be refused.
    expect(refused).toBeGreaterThan(sampleBytes.length - 14);
    expect(expectUndecodable(sampleBytes.subarray(0, 5), /truncated/)).not.toContain('evt');
  });

  it('the 0x0b flood of protobufjs #2121 (21 KiB of start-group tags) is refused, not a stack overflow', () => {
    const flood = new Uint8Array(21 * 1024).fill(0x0b);
    expectUndecodable(flood, /nested deeper than the limit of 100/);
    // The runtime itself stops at its recursion limit with its own error (fixed by protobufjs
    // PR #2143), rather than a RangeError from the JS stack.
    expect(() => nudge.v1.AppEvent.decode(flood)).toThrow('max depth exceeded');
    // Bigger floods behave the same.
    expectUndecodable(new Uint8Array(60 * 1024).fill(0x0b), /nested/);
  });

  it('deeply nested groups: 100 levels are skipped as an unknown field, 1,000 are refused', () => {
    const nested = (field: number, depth: number) => {
      const start = (field << 3) | 3;
      const end = (field << 3) | 4;
      return bytes(new Array(depth).fill(start), new Array(depth).fill(end));
    };
    const ok = decode(bytes(sampleBytes, nested(15, 100)));
    expect(ok.ok && ok.event.userId).toBe(PHONE);
    expectUndecodable(bytes(sampleBytes, nested(15, 1000)), /nested/);
    expectUndecodable(nested(1, 11_000), /nested/);
    // Unbalanced: start without end, end without start, mismatched end.
    expectUndecodable(bytes(0x7b), /truncated/);
    expectUndecodable(bytes(0x7c));
    expectUndecodable(bytes(0x7b, 0x84, 0x01));
  });

  it('22 KiB of nested map-entry starts is refused', () => {
    expectUndecodable(new Uint8Array(22 * 1024).fill(0x32));
  });

  it('length prefixes claiming 2^31 bytes or more are refused without allocating', () => {
    const before = process.memoryUsage().arrayBuffers;
    expectUndecodable(bytes(0x0a, 0x80, 0x80, 0x80, 0x80, 0x08, 0x61)); // event_id, 2^31
    expectUndecodable(bytes(0x0a, 0xff, 0xff, 0xff, 0xff, 0x07, 0x61), /truncated/); // 2^31 - 1
    expectUndecodable(bytes(0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x61)); // 2^32 - 1
    expectUndecodable(bytes(0x32, 0x80, 0x80, 0x80, 0x80, 0x08)); // props entry, 2^31
    expectUndecodable(bytes(0x32, 0x05, 0x0a, 0xff, 0xff, 0xff, 0x07)); // key length inside an entry
    expectUndecodable(bytes(0x7a, 0xff, 0xff, 0xff, 0xff, 0x07)); // unknown field 15
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
  });

  it('over-long varints, bad wire types, field number 0 and invalid UTF-8 are refused', () => {
    expectUndecodable(bytes(0x20, new Array(10).fill(0xff), 0x01), /too many bytes/);
    expectUndecodable(bytes(0x0e), /wire type/);
    expectUndecodable(bytes(0x0f, 0x00), /wire type/);
    expectUndecodable(bytes(0x02, 0x00), /tag/);
    // protobufjs 8 verifies UTF-8 for proto3 strings (TextDecoder with fatal: true).
    expectUndecodable(bytes(0x0a, 0x01, 0xff), /UTF-8/);
    expectUndecodable(bytes(0x12, 0x03, 0xed, 0xa0, 0x80), /UTF-8/); // an encoded lone surrogate
  });

  it('messages never echo the bytes', () => {
    const planted = bytes(0x12, PHONE.length, ascii(PHONE), 0x1a, 0x7f, ascii('Zhang Wei'));
    const message = expectUndecodable(planted);
    expect(message).not.toContain(PHONE);
    expect(message).not.toContain('Zhang');
    expect(message).toMatch(/^The 27 bytes are not a valid nudge\.v1\.AppEvent: .+\. Check that the producer/);
  });

  it('refuses input over maxEventBytes before reading a single byte', () => {
    let reads = 0;
    const backing = new Uint8Array(64 * 1024 + 1);
    const spy = new Proxy(backing, {
      get(target, prop) {
        if (typeof prop === 'string' && /^\d+$/.test(prop)) reads++;
        return Reflect.get(target, prop, target) as unknown;
      },
    });
    const r = decode(spy);
    expect(r.ok ? null : r.rejection.code).toBe('NUDGE_EVENT_TOO_LARGE');
    expect(r.ok ? '' : r.rejection.message).toContain('65537 bytes; the limit is 65536');
    expect(reads).toBe(0);
  });

  it('accepts exactly maxEventBytes (64 KiB by default), refuses one byte more', () => {
    // Pad a valid event with an unknown length-delimited field 15 (tag 0x7a, 3-byte length).
    const pad = (total: number) => {
      const n = total - sampleBytes.length - 4;
      return bytes(sampleBytes, 0x7a, 0x80 | (n & 0x7f), 0x80 | ((n >> 7) & 0x7f), n >> 14, new Array(n).fill(0x41));
    };
    const exact = pad(65536);
    expect(exact.length).toBe(65536);
    const r = decode(exact);
    expect(r.ok && r.event.userId).toBe(PHONE); // the unknown field is skipped
    expect(decode(pad(65537)).ok).toBe(false);
    expect(decode(pad(65537), 70_000).ok).toBe(true);
    expect(decode(sampleBytes, sampleBytes.length - 1).ok).toBe(false);
  });

  it('a __proto__ map key is plain data: no prototype is touched', () => {
    const protoNamesBefore = Object.getOwnPropertyNames(Object.prototype).sort();
    const entry = (k: string, v: string) => {
      const body = bytes(0x0a, k.length, ascii(k), 0x12, v.length, ascii(v));
      return bytes(0x32, body.length, body);
    };
    const evil = bytes(
      sampleBytes,
      entry('__proto__', 'polluted'),
      entry('constructor', 'x'),
      entry('toString', 'y'),
      entry('hasOwnProperty', 'z'),
    );
    const r = decode(evil);
    if (!r.ok) throw new Error(r.rejection.message);
    const p = r.event.props;
    expect(Object.getPrototypeOf(p)).toBeNull();
    expect(Object.prototype.hasOwnProperty.call(p, '__proto__')).toBe(true);
    expect(p['__proto__']).toBe('polluted');
    expect(p['constructor']).toBe('x');
    expect(p['toString']).toBe('y');
    expect(Object.keys(p)).toEqual(['page', 'contact', 'amount_band', 'ab', '__proto__', 'constructor', 'toString', 'hasOwnProperty']);
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(protoNamesBefore);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.getPrototypeOf(r.event)).toBe(Object.prototype);
  });

  it('skips unknown fields and known fields sent with the wrong wire type', () => {
    const withExtras = bytes(sampleBytes, 0x78, 0x05, 0x85, 0x01, 0x01, 0x02, 0x03, 0x04); // field 15 varint, field 16 fixed32
    const r = decode(withExtras);
    expect(r.ok && r.event.eventId).toBe('evt-hostile-1');
    const wrongType = decode(bytes(0x08, 0x01, 0x12, 0x01, 0x75)); // event_id as a varint
    expect(wrongType.ok && [wrongType.event.eventId, wrongType.event.userId]).toEqual(['', 'u']);
  });

  it('int64 values decode to numbers, including negative and beyond 2^53', () => {
    const neg = decode(bytes(0x20, 0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)); // -5
    expect(neg.ok && neg.event.timeMs).toBe(-5);
    const big = decode(bytes(0x50, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)); // 2^63 - 1
    expect(big.ok && big.event.sentMs).toBe(2 ** 63);
    const empty = decode(new Uint8Array(0));
    expect(empty.ok && [empty.event.timeMs, empty.event.sentMs, empty.event.value]).toEqual([0, 0, 0]);
  });

  it('refuses values that are not byte arrays', () => {
    for (const v of [null, undefined, 'abc', [1, 2, 3], new ArrayBuffer(4), { length: 3 }, 42]) {
      const r = decode(v);
      expect(r.ok ? null : r.rejection.code).toBe('NUDGE_EVENT_UNDECODABLE');
    }
  });

  it('seeded random bytes never throw and yield only known codes', () => {
    let seed = 0x9e3779b9;
    const next = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
    for (let i = 0; i < 1000; i++) {
      const buf = new Uint8Array(Math.floor(next() * 512));
      for (let j = 0; j < buf.length; j++) buf[j] = Math.floor(next() * 256);
      const r = decode(buf);
      if (!r.ok) expect(Object.keys(EVENT_ERROR_CODES)).toContain(r.rejection.code);
    }
  });
});
