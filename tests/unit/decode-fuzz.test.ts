import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeEvent, encodeEvent, EVENT_ERROR_CODES, type AppEvent, type DecodeResult } from '../../src/contract/event.js';
import { DEFAULT_EVENT_LIMITS, parseEvent } from '../../src/contract/validate.js';

// Property tests for the decoder (reliability.md goal G10): whatever the bytes, decodeEvent and
// parseEvent return a result and never throw; a rejection carries a catalogued code; an accepted
// event has the right shape, with props in a null-prototype object.

const NOW = 1767225600000;
const KNOWN_CODES = new Set(Object.keys(EVENT_ERROR_CODES));

function call(fn: () => DecodeResult): DecodeResult {
  try {
    return fn();
  } catch (err) {
    throw new Error(`decoder threw: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  }
}

function assertWellFormed(r: DecodeResult, decodeOnly: boolean): void {
  expect(typeof r.ok).toBe('boolean');
  if (!r.ok) {
    expect(KNOWN_CODES.has(r.rejection.code), r.rejection.code).toBe(true);
    if (decodeOnly) expect(['NUDGE_EVENT_UNDECODABLE', 'NUDGE_EVENT_TOO_LARGE']).toContain(r.rejection.code);
    expect(typeof r.rejection.message).toBe('string');
    expect(r.rejection.message.length).toBeGreaterThan(20);
    return;
  }
  const e = r.event;
  for (const k of ['eventId', 'userId', 'name', 'channel', 'tz', 'deviceId'] as const) expect(typeof e[k]).toBe('string');
  for (const k of ['timeMs', 'value', 'sentMs'] as const) expect(typeof e[k]).toBe('number');
  expect(Number.isInteger(e.timeMs) && Number.isInteger(e.sentMs)).toBe(true);
  expect(Object.getPrototypeOf(e.props)).toBeNull();
  for (const v of Object.values(e.props)) expect(typeof v).toBe('string');
}

function checkBytes(bytes: Uint8Array): void {
  assertWellFormed(call(() => decodeEvent(bytes)), true);
  assertWellFormed(call(() => parseEvent(bytes, DEFAULT_EVENT_LIMITS, NOW)), false);
}

const text = (maxLength: number) => fc.string({ unit: 'binary', maxLength });

const arbEvent: fc.Arbitrary<AppEvent> = fc.record({
  eventId: text(40),
  userId: text(40),
  name: fc.oneof(fc.constantFrom('login', 'page_view', 'transfer_done'), text(20)),
  timeMs: fc.oneof(fc.integer({ min: 946684800000, max: 4102444799999 }), fc.maxSafeInteger()),
  channel: text(12),
  props: fc
    .uniqueArray(fc.tuple(fc.oneof(text(16), fc.constantFrom('__proto__', 'constructor', 'toString')), text(40)), {
      maxLength: 8,
      selector: ([k]) => k,
    })
    .map((entries) => {
      const p = Object.create(null) as Record<string, string>;
      for (const [k, v] of entries) p[k] = v;
      return p;
    }),
  value: fc.double(),
  tz: fc.oneof(fc.constantFrom('', 'Asia/Shanghai', 'UTC'), text(20)),
  deviceId: text(30),
  sentMs: fc.maxSafeInteger(),
});

type Mutation = { kind: 'flip' | 'insert' | 'delete' | 'truncate'; pos: number; byte: number; bit: number };
const arbMutations = fc.array(
  fc.record({
    kind: fc.constantFrom<Mutation['kind']>('flip', 'insert', 'delete', 'truncate'),
    pos: fc.nat(),
    byte: fc.integer({ min: 0, max: 255 }),
    bit: fc.integer({ min: 0, max: 7 }),
  }),
  { minLength: 1, maxLength: 8 },
);

function mutate(input: Uint8Array, mutations: Mutation[]): Uint8Array {
  let b = [...input];
  for (const m of mutations) {
    const at = b.length === 0 ? 0 : m.pos % (b.length + (m.kind === 'insert' ? 1 : 0));
    if (m.kind === 'flip' && b.length > 0) b[at] = (b[at] as number) ^ (1 << m.bit);
    else if (m.kind === 'insert') b.splice(at, 0, m.byte);
    else if (m.kind === 'delete') b.splice(at, 1);
    else if (m.kind === 'truncate') b = b.slice(0, at);
  }
  return new Uint8Array(b);
}

describe('decoder fuzzing', () => {
  it('random bytes up to 4 KiB: never throws, always a known result (2,000 runs)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), checkBytes), { numRuns: 2000 });
  });

  it('bytes made of tags and lengths (more likely to reach deep paths; 2,000 runs)', () => {
    // Field numbers 1..16 with every wire type, and varints near length limits.
    const tag = fc.integer({ min: 1, max: 16 }).chain((f) => fc.integer({ min: 0, max: 7 }).map((w) => (f << 3) | w));
    const piece = fc.oneof(tag, fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x0b, 0x0c, 0x32, 0x80, 0xff, 0x7f));
    fc.assert(fc.property(fc.array(piece, { maxLength: 2048 }), (arr) => checkBytes(new Uint8Array(arr))), { numRuns: 2000 });
  });

  it('mutated valid events (flip, insert, delete, truncate): never throws (2,000 runs)', () => {
    fc.assert(
      fc.property(arbEvent, arbMutations, (e, mutations) => checkBytes(mutate(encodeEvent(e), mutations))),
      { numRuns: 2000 },
    );
  });

  it('encode then decode gives the event back (1,000 runs)', () => {
    fc.assert(
      fc.property(arbEvent, (e) => {
        const r = call(() => decodeEvent(encodeEvent(e)));
        if (!r.ok) throw new Error(`${r.rejection.code}: ${r.rejection.message}`);
        expect({ ...r.event, props: { ...r.event.props } }).toEqual({ ...e, props: { ...e.props } });
        expect(Object.keys(r.event.props)).toEqual(Object.keys(e.props));
      }),
      { numRuns: 1000 },
    );
  });

  it('inputs up to 1 MiB with the limit raised to 1 MiB: never throws (20 runs)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64 * 1024, maxLength: 1 << 20 }), fc.constantFrom(0x0b, 0x32, 0x7b, -1), (arr, fill) => {
        const input = fill < 0 ? arr : arr.fill(fill, 0, arr.length >> 1);
        const r = call(() => decodeEvent(input, { maxEventBytes: 1 << 20 }));
        assertWellFormed(r, true);
      }),
      { numRuns: 20 },
    );
  });
});
