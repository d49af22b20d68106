import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AppEvent } from '../../src/contract/event.js';
import { loadConfig } from '../../src/config/load.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { applyEvents } from '../../src/state/decide.js';
import { decodeUserState, encodeUserState, newUserState, type UserState } from '../../src/state/user-state.js';
import { TrafficGenerator } from '../../src/tools/loadgen/traffic.js';

/**
 * The stored per-user state leaves empty fields out (encodeUserState); decoding puts them back.
 * Checked on states the real step builds from the shipped config (journeys included, with live
 * event times so journeys enter, wait and touch), against plain JSON.stringify — the format
 * every state stored before this change has.
 */
const ZONE = 'Asia/Shanghai';
const NOW = Date.UTC(2026, 10, 20, 6);

function realStates(): UserState[] {
  const spec = compileStateSpec(loadConfig({ file: path.resolve('config', 'nudge.yaml'), env: {} }));
  const gen = new TrafficGenerator({ seed: 11, users: 300, ratePerSec: 5, startMs: NOW - 3_600_000, reportingTimeZone: ZONE });
  const states = new Map<string, UserState>();
  let streamTime = 0;
  for (let b = 0; b < 36; b++) {
    const batch: AppEvent[] = [];
    for (let i = 0; i < 500; i++) {
      const e = gen.next().event;
      batch.push({ ...e, props: Object.setPrototypeOf({ ...e.props }, null) as Record<string, string> });
    }
    const loaded = new Map<string, UserState | undefined>();
    for (const e of batch) loaded.set(e.userId, states.get(e.userId));
    const r = applyEvents(batch, loaded, streamTime, NOW, spec);
    streamTime = r.streamTime;
    for (const [u, s] of r.states) states.set(u, s);
  }
  return [...states.values()];
}

/** The state as decoding must give it back: optional maps that were empty may come back absent. */
function normalised(s: UserState): unknown {
  const copy = JSON.parse(JSON.stringify(s)) as Record<string, unknown>;
  for (const k of ['bActive', 'hllSeen']) if (copy[k] !== undefined && Object.keys(copy[k] as object).length === 0) delete copy[k];
  return copy;
}

describe('stored user state encoding', () => {
  const states = realStates();

  it('has states with and without journeys activity to check (the fixture is not trivial)', () => {
    expect(states.length).toBeGreaterThan(200);
    expect(states.some((s) => (s.journeys?.waits.length ?? 0) > 0)).toBe(true);
    expect(states.some((s) => (s.journeys?.history.length ?? 0) > 0)).toBe(true);
    expect(states.some((s) => Object.keys(s.traits).length === 0)).toBe(true);
  });

  it('round-trips every state exactly', () => {
    for (const s of states) expect(decodeUserState(encodeUserState(s))).toEqual(normalised(s));
  });

  it('decodes states stored in the old format (every field present) to the same value', () => {
    for (const s of states) expect(decodeUserState(JSON.stringify(s))).toEqual(normalised(s));
  });

  it('decodes a state stored before journeys or breakdowns existed', () => {
    const old = '{"firstSeen":1,"lastSeen":2,"tz":"","stage":"new","stageSince":1,"active":{"active":[20000]},"counters":{},"sums":{},"streaks":{},"traits":{},"recentIds":["e1"]}';
    const s = decodeUserState(old);
    expect(s).toEqual(JSON.parse(old));
    expect(s.journeys).toBeUndefined();
    expect(decodeUserState(encodeUserState(s))).toEqual(s);
  });

  it('leaves empty fields out, and is smaller than the old format', () => {
    let before = 0;
    let after = 0;
    for (const s of states) {
      const text = encodeUserState(s);
      // The state's own fields and the journey state's (deeper ones belong to the rules).
      const stored = JSON.parse(text) as Record<string, unknown>;
      const journeys = (stored['journeys'] ?? {}) as Record<string, unknown>;
      for (const v of [...Object.values(stored).filter((x) => x !== stored['journeys']), ...Object.values(journeys)]) {
        expect(v === '' || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && Object.keys(v).length === 0)).toBe(false);
      }
      before += JSON.stringify(s).length;
      after += text.length;
    }
    expect(after).toBeLessThan(before * 0.95);
  });

  it('does not change the state it encodes', () => {
    for (const s of states.slice(0, 50)) {
      const copy = JSON.parse(JSON.stringify(s)) as unknown;
      encodeUserState(s);
      expect(s).toEqual(copy);
    }
  });

  it('gives each decoded state its own empty collections (no sharing between users)', () => {
    const a = decodeUserState('{"firstSeen":1,"lastSeen":1,"stage":"new","stageSince":1,"journeys":{}}');
    const b = decodeUserState('{"firstSeen":1,"lastSeen":1,"stage":"new","stageSince":1,"journeys":{}}');
    a.traits['x'] = 'y';
    a.journeys?.waits.push({ kind: 'inactive', journeyId: 'j', dueAt: 5 });
    expect(b.traits).toEqual({});
    expect(b.journeys?.waits).toEqual([]);
  });

  it('gives every state, new or decoded, whichever fields it stored, the same fields in the same order', () => {
    // Same own keys in the same order, from one literal: one V8 hidden class, so the step's
    // property accesses stay monomorphic (states of several shapes made V8 drop and recompile
    // the step's optimised code). The stored text is unchanged: undefined fields are not written.
    const order = Object.keys(newUserState(1));
    const minimal = decodeUserState('{"firstSeen":1,"lastSeen":1,"stage":"new","stageSince":1}');
    expect(Object.keys(minimal)).toEqual(order);
    for (const s of states) {
      expect(Object.keys(s)).toEqual(order);
      const decoded = decodeUserState(encodeUserState(s));
      expect(Object.keys(decoded)).toEqual(order);
      expect(encodeUserState(decoded)).toEqual(encodeUserState(s));
    }
    expect(JSON.parse(encodeUserState(minimal))).toEqual({ firstSeen: 1, lastSeen: 1, stage: 'new', stageSince: 1 });
  });

  it('reads a journey state stored as null, or with null lists, as empty, in the one shape', () => {
    const empty = Object.keys(decodeUserState('{"firstSeen":1,"lastSeen":1,"stage":"new","stageSince":1,"journeys":{}}').journeys ?? {});
    const fromNull = decodeUserState('{"firstSeen":1,"lastSeen":1,"stage":"new","stageSince":1,"journeys":null}');
    expect(fromNull.journeys).toEqual({ entries: {}, waits: [], history: [], lastTouchByChannel: {}, consent: {}, firstTimeSeen: [], fired: [], cancelled: [] });
    const nullLists = decodeUserState('{"firstSeen":1,"lastSeen":1,"stage":"new","stageSince":1,"journeys":{"waits":null,"history":null,"entries":null}}');
    expect(nullLists.journeys?.waits).toEqual([]);
    expect(nullLists.journeys?.history).toEqual([]);
    expect(nullLists.journeys?.entries).toEqual({});
    expect(Object.keys(fromNull.journeys ?? {})).toEqual(empty);
    expect(Object.keys(nullLists.journeys ?? {})).toEqual(empty);
  });

  it('keeps journey and user fields it does not know (a newer version wrote them), "__proto__" included', () => {
    const text = '{"firstSeen":1,"lastSeen":1,"stage":"new","stageSince":1,"later":{"a":1},"__proto__":{"p":1},"journeys":{"waits":[],"nextGen":[7],"__proto__":{"q":2}}}';
    const s = decodeUserState(text);
    const again = JSON.parse(encodeUserState(s)) as Record<string, unknown> & { journeys: Record<string, unknown> };
    expect(again['later']).toEqual({ a: 1 });
    expect(Object.getOwnPropertyDescriptor(again, '__proto__')?.value).toEqual({ p: 1 });
    expect(again.journeys['nextGen']).toEqual([7]);
    expect(Object.getOwnPropertyDescriptor(again.journeys, '__proto__')?.value).toEqual({ q: 2 });
    expect(Object.getPrototypeOf(s)).toBe(Object.prototype);
    expect(Object.getPrototypeOf(s.journeys)).toBe(Object.prototype);
  });
});
