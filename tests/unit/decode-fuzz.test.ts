import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeEvent, encodeEvent, EVENT_ERROR_CODES, type AppEvent, type DecodeResult } from '../../src/contract/event.js';
import { eventFromJson, eventToJson } from '../../src/contract/json.js';
import { DEFAULT_EVENT_LIMITS, parseEvent } from '../../src/contract/validate.js';

// Property tests for the decoder (the shared research brief reliability.md goal G10): whatever the bytes, decodeEvent and
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

// Issue 6 item 6: the shapes an attacker reaches for, each as a property rather than one sample
// (decode-hostile.test.ts pins the known cases): truncations of arbitrary valid events, nesting
// at random depths in both formats, and length claims far beyond the input.

/** Every cut of an encoded event: a shorter valid message (fields whole or absent) or UNDECODABLE. */
describe('decoder fuzzing: truncations, nesting, huge lengths, JSON', () => {
  it('every prefix of an arbitrary valid event is refused as UNDECODABLE or decodes to a subset (50 events, every cut)', () => {
    fc.assert(
      fc.property(arbEvent, (e) => {
        const full = encodeEvent(e);
        for (let len = 0; len < full.length; len++) {
          const r = call(() => decodeEvent(full.subarray(0, len)));
          assertWellFormed(r, true);
          if (!r.ok) continue;
          // A cut on a field boundary: each field is whole or at its default, never a partial string.
          for (const k of ['eventId', 'userId', 'name', 'channel', 'tz', 'deviceId'] as const) expect([e[k], '']).toContain(r.event[k]);
          for (const [k, v] of Object.entries(r.event.props)) expect(e.props[k]).toBe(v);
        }
      }),
      { numRuns: 50 },
    );
  });

  it('groups nested to a random depth (1..30,000) under any field, balanced or not: typed result, never a stack overflow (300 runs)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30_000 }),
        fc.integer({ min: 1, max: 20 }),
        fc.constantFrom('balanced', 'open', 'mismatched'),
        fc.boolean(),
        (depth, field, shape, prefixValid) => {
          // Tags as varints: from field 16 up a tag takes two bytes (one byte would be a continuation).
          const start = varint((field << 3) | 3);
          const end = varint(shape === 'mismatched' ? (((field % 20) + 1) << 3) | 4 : (field << 3) | 4);
          const body = [...new Array<number[]>(depth).fill(start).flat(), ...(shape === 'open' ? [] : new Array<number[]>(depth).fill(end).flat())];
          const head = prefixValid ? [...encodeEvent({ ...emptyish, eventId: 'e', userId: 'u', name: 'login', timeMs: NOW })] : [];
          const input = new Uint8Array([...head, ...body]);
          if (input.length > DEFAULT_EVENT_LIMITS.maxEventBytes) {
            const r = call(() => decodeEvent(input));
            expect(r.ok ? null : r.rejection.code).toBe('NUDGE_EVENT_TOO_LARGE');
            return;
          }
          const r = call(() => decodeEvent(input));
          assertWellFormed(r, true);
          // Past the runtime's recursion limit of 100 a balanced run is refused, not skipped.
          if (depth > 100) expect(r.ok).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('nested props map entries (field 6 inside field 6) at random depths: typed result (200 runs)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5_000 }), (depth) => {
        // Each level is a length-delimited map entry whose value is the next level.
        // Built outside in: the length prefixes first, the innermost entry last.
        const heads: number[][] = [];
        let length = 3;
        for (let i = 0; i < depth && length < 60_000; i++) {
          const head = [0x32, ...varint(length)];
          heads.push(head);
          length += head.length;
        }
        const inner = new Uint8Array([...heads.reverse().flat(), 0x0a, 0x01, 0x6b]);
        assertWellFormed(call(() => decodeEvent(inner)), true);
        assertWellFormed(call(() => parseEvent(inner, DEFAULT_EVENT_LIMITS, NOW)), false);
      }),
      { numRuns: 200 },
    );
  });

  it('length prefixes claiming up to 2^35 bytes on any field are refused, and allocate nothing near the claim (2,000 runs)', () => {
    const gc = exposeGc();
    gc();
    const before = process.memoryUsage();
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 31 }),
        fc.oneof(fc.integer({ min: 1 << 16, max: 2 ** 31 - 1 }), fc.integer({ min: 2 ** 31, max: 2 ** 35 })),
        fc.uint8Array({ maxLength: 64 }),
        (field, claimed, tail) => {
          const input = new Uint8Array([...varint((field << 3) | 2), ...varint(claimed), ...tail]);
          const r = call(() => decodeEvent(input));
          // The claim exceeds what follows, whatever it is: never a decoded event.
          expect(r.ok ? 'decoded' : r.rejection.code).toBe('NUDGE_EVENT_UNDECODABLE');
        },
      ),
      { numRuns: 2000 },
    );
    gc();
    const after = process.memoryUsage();
    // 2,000 claims of 64 KiB..32 GiB: had any been allocated, external memory would show it.
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(8 * 1024 * 1024);
    expect(after.heapUsed - before.heapUsed).toBeLessThan(32 * 1024 * 1024);
  });

  it('memory stays flat over 100,000 hostile decodes (random bytes, floods, huge claims)', () => {
    const gc = exposeGc();
    const samples = fc.sample(
      fc.oneof(
        fc.uint8Array({ maxLength: 2048 }),
        fc.integer({ min: 1, max: 60_000 }).map((n) => new Uint8Array(n).fill(0x0b)),
        fc.integer({ min: 2 ** 20, max: 2 ** 34 }).map((n) => new Uint8Array([0x32, ...varint(n), 0x0a])),
      ),
      { numRuns: 500, seed: 6 },
    );
    const round = () => {
      for (let i = 0; i < 20_000; i++) {
        const input = samples[i % samples.length] as Uint8Array;
        decodeEvent(input);
        parseEvent(input, DEFAULT_EVENT_LIMITS, NOW);
      }
    };
    round(); // warm-up: JIT, tz cache, protobufjs pools
    gc();
    const before = process.memoryUsage();
    for (let r = 0; r < 5; r++) round();
    gc();
    const after = process.memoryUsage();
    // Nothing is retained per input: a leak of even 100 bytes per decode would show as 10 MB.
    expect(after.heapUsed - before.heapUsed, `heap grew ${after.heapUsed - before.heapUsed} bytes`).toBeLessThan(8 * 1024 * 1024);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(4 * 1024 * 1024);
  });

  it('JSON events: any JSON value, deeply nested values and hostile keys give BAD_JSON or an event, never a throw (1,000 runs)', () => {
    const nested = fc.integer({ min: 1, max: 5_000 }).chain((depth) =>
      fc.constantFrom('[', '{"a":').map((open) => {
        const close = open === '[' ? ']' : '}';
        return JSON.parse(open.repeat(depth) + '1' + close.repeat(depth)) as unknown;
      }),
    );
    const eventLike = fc.record(
      {
        event_id: fc.oneof(fc.string(), fc.jsonValue({ maxDepth: 3 }), nested),
        user_id: fc.oneof(fc.string(), fc.jsonValue({ maxDepth: 3 })),
        name: fc.oneof(fc.constant('login'), fc.jsonValue({ maxDepth: 2 })),
        time_ms: fc.oneof(fc.integer(), fc.string(), fc.double(), fc.constant('2026-03-01T08:00:00+08:00')),
        props: fc.oneof(fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor')), fc.jsonValue({ maxDepth: 3 })), nested),
        value: fc.oneof(fc.double(), fc.string(), nested),
      },
      { requiredKeys: [] },
    );
    const protoNames = Object.getOwnPropertyNames(Object.prototype).sort();
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), nested, eventLike, fc.anything()), (value) => {
        let r: DecodeResult | undefined;
        expect(() => {
          r = eventFromJson(value);
        }).not.toThrow();
        const result = r as DecodeResult;
        if (!result.ok) expect(result.rejection.code).toBe('NUDGE_EVENT_BAD_JSON');
        else assertWellFormed(result, false);
      }),
      { numRuns: 1000 },
    );
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(protoNames);
  });

  it('rejection messages never quote the event: a canary in any string field stays out of the reason (2,000 runs)', () => {
    const CANARY = 'Canary13800138000';
    const field = fc.constantFrom('eventId', 'userId', 'name', 'channel', 'tz', 'deviceId', 'propKey', 'propValue');
    fc.assert(
      fc.property(arbEvent, field, fc.oneof(fc.nat(20), fc.nat(600)), (e, where, pad) => {
        const planted = CANARY + 'x'.repeat(pad);
        const ev: AppEvent = { ...e, props: Object.assign(Object.create(null) as Record<string, string>, e.props) };
        if (where === 'propKey') ev.props[planted] = 'v';
        else if (where === 'propValue') ev.props.k = planted;
        else ev[where] = planted;
        const bytes = encodeEvent(ev);
        for (const input of [bytes, bytes.subarray(0, bytes.length - 1)]) {
          const r = call(() => parseEvent(input, DEFAULT_EVENT_LIMITS, NOW));
          if (!r.ok) expect(r.rejection.message).not.toContain(CANARY);
        }
        // The canary as the only unknown field: an identifier-like key was quoted until the PII
        // canary chaos test caught it (tests/chaos/pii-canaries.test.ts).
        for (const json of [{ ...eventToJson(ev), [planted]: 1 }, { ...eventToJson(ev), props: { [planted]: { nested: true } } }]) {
          const j = eventFromJson(json);
          if (!j.ok) expect(j.rejection.message).not.toContain(CANARY);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

const emptyish: AppEvent = { eventId: '', userId: '', name: '', timeMs: 0, channel: '', props: Object.create(null) as Record<string, string>, value: 0, tz: '', deviceId: '', sentMs: 0 };

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

/** The V8 collector, so heap figures compare live data rather than garbage not yet swept. */
function exposeGc(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g !== undefined) return g;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}
