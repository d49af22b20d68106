import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AppEvent } from '../../src/contract/event.js';
import { loadConfig } from '../../src/config/load.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { applyEvents, type StepResult } from '../../src/state/decide.js';
import type { StateSpec } from '../../src/state/spec.js';
import { decodeUserState, encodeUserState, type UserState } from '../../src/state/user-state.js';
import { TrafficGenerator } from '../../src/tools/loadgen/traffic.js';

/**
 * The lanes give the states they loaded to the step to change in place (applyEvents' `owned`)
 * instead of having it copy each one first. That must decide exactly what a step decides that
 * shares nothing between events: the reference applies every event on its own, to a state
 * decoded afresh from the JSON the previous event left, without `owned`. The owning step runs
 * on whole batches, its states stored and loaded as JSON between batches as the lanes do. Both
 * run the shipped playbook on banking traffic, so journeys enter, wait, fire absences, touch,
 * convert and reward streaks; every batch must end with the same states, and the batch's
 * counters, touches, timers, transitions and device sign-ups must add up to the same.
 */
const ZONE = 'Asia/Shanghai';
const NOW = Date.UTC(2026, 10, 20, 6);
const MINUTE = 60_000;
const HOUR = 3_600_000;

function batches(count: number, size: number, spanMs: number, seed: number): AppEvent[][] {
  // Live: a batch covers `spanMs` of traffic and is decided at its end.
  const gen = new TrafficGenerator({ seed, users: 250, ratePerSec: size / (spanMs / 1000), startMs: NOW, reportingTimeZone: ZONE });
  const out: AppEvent[][] = [];
  for (let b = 0; b < count; b++) {
    const batch: AppEvent[] = [];
    for (let i = 0; i < size; i++) {
      const e = gen.next().event;
      batch.push({ ...e, props: Object.setPrototypeOf({ ...e.props }, null) as Record<string, string> });
    }
    out.push(batch);
  }
  return out;
}

interface Written {
  counters: Map<string, number>;
  outbox: Array<[string, string]>;
  timers: Map<string, number | null>;
  transitions: unknown[];
  signups: unknown[];
}

function emptyWritten(): Written {
  return { counters: new Map(), outbox: [], timers: new Map(), transitions: [], signups: [] };
}

/** Adds what one step result would commit to `w`. */
function add(w: Written, r: StepResult): void {
  for (const [hash, fields] of r.counters) for (const [f, d] of fields) w.counters.set(`${hash} ${f}`, (w.counters.get(`${hash} ${f}`) ?? 0) + d);
  for (const o of r.outbox) w.outbox.push([o.field, o.value]);
  for (const [u, due] of r.timers) w.timers.set(u, due);
  w.transitions.push(...r.transitions);
  for (const s of r.signups) w.signups.push({ set: s.set, userId: s.userId, at: s.at, eventId: s.eventId });
}

function plain(w: Written): unknown {
  return { ...w, counters: Object.fromEntries([...w.counters].filter(([, v]) => v !== 0).sort()), timers: Object.fromEntries([...w.timers].sort()) };
}

/** The stored JSON, as data (a decoded state orders its fields its own way). */
const stored = (text: string): unknown => JSON.parse(text);

function compare(spec: StateSpec, all: AppEvent[][], nowOf: (batch: number) => number, prepare?: (states: Map<string, string>) => void): Written {
  const reference = new Map<string, string>();
  const owned = new Map<string, string>();
  let streamRef = 0;
  let streamOwned = 0;
  const total = emptyWritten();
  for (const [i, batch] of all.entries()) {
    const now = nowOf(i);
    if (i === all.length >> 1 && prepare) {
      prepare(reference);
      prepare(owned);
    }
    // The reference: one event at a time, each on a state decoded afresh.
    const expected = emptyWritten();
    for (const e of batch) {
      const text = reference.get(e.userId);
      const r = applyEvents([e], new Map([[e.userId, text === undefined ? undefined : decodeUserState(text)]]), streamRef, now, spec);
      streamRef = r.streamTime;
      for (const [u, s] of r.states) reference.set(u, encodeUserState(s));
      add(expected, r);
    }
    const loaded = new Map<string, UserState | undefined>();
    for (const e of batch) {
      const text = owned.get(e.userId);
      loaded.set(e.userId, text === undefined ? undefined : decodeUserState(text));
    }
    const r = applyEvents(batch, loaded, streamOwned, now, spec, undefined, true);
    streamOwned = r.streamTime;
    for (const [u, s] of r.states) owned.set(u, encodeUserState(s));
    const got = emptyWritten();
    add(got, r);
    expect(plain(got), `batch ${i}`).toEqual(plain(expected));
    expect(streamOwned).toBe(streamRef);
    for (const u of new Set(batch.map((e) => e.userId))) expect(stored(owned.get(u)!), `batch ${i}, ${u}`).toEqual(stored(reference.get(u)!));
    add(total, r);
  }
  return total;
}

const count = (w: Written, suffix: string): number => [...w.counters].filter(([k]) => k.endsWith(suffix)).reduce((n, [, v]) => n + v, 0);

describe('the state step on states it owns', () => {
  const spec = compileStateSpec(loadConfig({ file: path.resolve('config', 'nudge.yaml'), env: {} }));

  it('decides live traffic exactly as a step that shares nothing between events', () => {
    const w = compare(spec, batches(40, 400, MINUTE, 29), (i) => NOW + (i + 1) * MINUTE);
    // The traffic reached what the comparison is about.
    expect(w.outbox.length).toBeGreaterThan(20);
    expect(count(w, 'j:transfer-abandoned outcome:send')).toBeGreaterThan(0);
    expect(w.signups.length).toBeGreaterThan(0);
  });

  it('decides ten days of traffic, streak rewards included, exactly as that step', () => {
    // Six hours a batch: users check in on consecutive days and reach the streak triggers.
    const w = compare(spec, batches(40, 300, 6 * HOUR, 31), (i) => NOW + (i + 1) * 6 * HOUR);
    expect(count(w, 'j:checkin-3 outcome:send') + count(w, 'j:checkin-3 outcome:defer')).toBeGreaterThan(0);
  });

  it('leaves its input as it was when it does not own it', () => {
    const states = new Map<string, UserState>();
    let stream = 0;
    for (const [i, batch] of batches(20, 400, MINUTE, 41).entries()) {
      const loaded = new Map<string, UserState | undefined>();
      for (const e of batch) loaded.set(e.userId, states.get(e.userId));
      const before = [...loaded].map(([u, s]) => [u, s === undefined ? '' : encodeUserState(s)]);
      const r = applyEvents(batch, loaded, stream, NOW + (i + 1) * MINUTE, spec);
      expect([...loaded].map(([u, s]) => [u, s === undefined ? '' : encodeUserState(s)]), `batch ${i}`).toEqual(before);
      stream = r.streamTime;
      for (const [u, s] of r.states) states.set(u, s);
    }
  });

  it('reads journey states stored by an older version (entries without pending, lists left out) the same way', () => {
    // Halfway, every stored journey state loses what older versions did not write.
    const older = (states: Map<string, string>): void => {
      for (const [u, text] of states) {
        const s = JSON.parse(text) as { journeys?: Record<string, unknown> & { entries?: Record<string, Record<string, unknown>> } };
        if (s.journeys === undefined) continue;
        for (const e of Object.values(s.journeys.entries ?? {})) delete e['pending'];
        delete s.journeys['firstTimeSeen'];
        delete s.journeys['cancelled'];
        states.set(u, JSON.stringify(s));
      }
    };
    const w = compare(spec, batches(20, 400, MINUTE, 37), (i) => NOW + (i + 1) * MINUTE, older);
    expect(w.outbox.length).toBeGreaterThan(0);
  });
});
