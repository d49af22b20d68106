import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeEvent, encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { DEFAULT_EVENT_LIMITS, validateEvent } from '../../src/contract/validate.js';

// Bytes recorded by scripts/record-fixtures.ts must keep decoding to the hand-written fields in
// the sibling .json. A renumbered or retyped field in proto/ breaks this test.
const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/events');
const names = readdirSync(dir)
  .filter((f) => f.endsWith('.bin'))
  .map((f) => f.slice(0, -4))
  .sort();

function loadExpected(name: string): AppEvent {
  return JSON.parse(readFileSync(path.join(dir, `${name}.json`), 'utf8')) as AppEvent;
}

/** A plain copy of props, so toEqual compares entries and not prototypes. */
function plain(e: AppEvent): AppEvent {
  return { ...e, props: { ...e.props } };
}

describe('recorded event fixtures', () => {
  it('exist (the four recorded events)', () => {
    expect(names).toEqual(['login', 'minimal', 'transfer_started_props', 'unicode_props']);
  });

  it.each(names)('%s.bin decodes to the fields in its .json and passes validation', (name) => {
    const bytes = new Uint8Array(readFileSync(path.join(dir, `${name}.bin`)));
    const expected = loadExpected(name);
    const result = decodeEvent(bytes);
    if (!result.ok) throw new Error(`${name}: ${result.rejection.code} ${result.rejection.message}`);
    expect(plain(result.event)).toEqual(expected);
    expect(Object.getPrototypeOf(result.event.props)).toBeNull();
    expect(validateEvent(result.event, DEFAULT_EVENT_LIMITS, Date.UTC(2026, 0, 3))).toBeNull();
  });

  it.each(names)('%s.json re-encodes to the recorded bytes', (name) => {
    const bytes = new Uint8Array(readFileSync(path.join(dir, `${name}.bin`)));
    const expected = loadExpected(name);
    const event = { ...expected, props: Object.assign(Object.create(null) as Record<string, string>, expected.props) };
    expect(Buffer.from(encodeEvent(event)).toString('hex')).toBe(Buffer.from(bytes).toString('hex'));
  });

  it('decodes a Buffer (what the Kafka client hands over) like a Uint8Array', () => {
    const buf = readFileSync(path.join(dir, 'transfer_started_props.bin'));
    const result = decodeEvent(buf);
    expect(result.ok && plain(result.event)).toEqual(loadExpected('transfer_started_props'));
  });

  it('minimal.bin is the wire format written out by hand', () => {
    // Field tag = (number << 3) | wire type. Strings are wire type 2 (length-delimited), int64
    // wire type 0 (varint, 7 bits per byte, least significant group first).
    const str = (tag: number, s: string) => [tag, s.length, ...Buffer.from(s, 'ascii')];
    // 1767225600000 = 0x19B_76DA_A800 split into 7-bit groups, low first, with continuation bits.
    const timeVarint = [0x80, 0xd0, 0xea, 0xb6, 0xb7, 0x33];
    const expected = [...str(0x0a, 'evt-min-0001'), ...str(0x12, 'user-42'), ...str(0x1a, 'signup'), 0x20, ...timeVarint];
    expect([...readFileSync(path.join(dir, 'minimal.bin'))]).toEqual(expected);
    // Cross-check the varint against the number with BigInt arithmetic.
    let n = 0n;
    timeVarint.forEach((b, i) => (n |= BigInt(b & 0x7f) << BigInt(7 * i)));
    expect(n).toBe(1767225600000n);
  });

  it('unicode_props keeps __proto__ as a plain prop entry', () => {
    const result = decodeEvent(new Uint8Array(readFileSync(path.join(dir, 'unicode_props.bin'))));
    if (!result.ok) throw new Error(result.rejection.message);
    expect(Object.getPrototypeOf(result.event.props)).toBeNull();
    expect(Object.keys(result.event.props)).toEqual(['city', 'emoji', '__proto__']);
    expect(result.event.props['__proto__']).toBe('plain data');
  });
});
