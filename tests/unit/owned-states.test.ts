import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AppEvent } from '../../src/contract/event.js';
import { loadConfig } from '../../src/config/load.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { applyEvents, type StepResult } from '../../src/state/decide.js';
import { decodeUserState, encodeUserState, type UserState } from '../../src/state/user-state.js';
import { TrafficGenerator } from '../../src/tools/loadgen/traffic.js';

/**
 * The lanes give the states they loaded to the step to change in place (applyEvents' `owned`)
 * instead of having it copy each one first. That must decide exactly what the copying step
 * decides. Two runs over the same live banking traffic with the shipped playbook (so journeys
 * enter, wait, fire absences, touch and convert): one copying, with its states kept as the step
 * returned them; one owning, with its states stored and loaded as JSON between batches as the
 * lanes do. Every batch must give the same states, counters, touches and timers.
 */
const ZONE = 'Asia/Shanghai';
const NOW = Date.UTC(2026, 10, 20, 6);
const MINUTE = 60_000;

function batches(count: number, size: number): AppEvent[][] {
  // Live: a batch is a minute of traffic, decided at its end.
  const gen = new TrafficGenerator({ seed: 29, users: 250, ratePerSec: size / 60, startMs: NOW, reportingTimeZone: ZONE });
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

/** What a batch's commit would write, as plain data (a decoded state orders its fields its own way). */
function written(r: StepResult): unknown {
  return {
    states: Object.fromEntries([...r.states].map(([u, s]) => [u, JSON.parse(encodeUserState(s)) as unknown])),
    counters: [...r.counters].map(([h, f]) => [h, [...f].sort()]).sort(),
    outbox: r.outbox.map((o) => [o.field, o.value]),
    timers: [...r.timers].sort(),
    transitions: r.transitions,
    stats: r.stats,
  };
}

describe('the state step on states it owns', () => {
  it('decides every batch exactly as the copying step does', () => {
    const spec = compileStateSpec(loadConfig({ file: path.resolve('config', 'nudge.yaml'), env: {} }));
    const copied = new Map<string, UserState>();
    const stored = new Map<string, string>();
    let streamA = 0;
    let streamB = 0;
    let touches = 0;
    let absences = 0;
    for (const [i, batch] of batches(40, 400).entries()) {
      // The wall clock moves on between batches, as the lanes' does.
      const now = NOW + (i + 1) * MINUTE;
      const loadedA = new Map<string, UserState | undefined>();
      const loadedB = new Map<string, UserState | undefined>();
      for (const e of batch) {
        loadedA.set(e.userId, copied.get(e.userId));
        const text = stored.get(e.userId);
        loadedB.set(e.userId, text === undefined ? undefined : decodeUserState(text));
      }
      const before = [...loadedA].map(([u, s]) => [u, s === undefined ? '' : encodeUserState(s)]);
      const a = applyEvents(batch, loadedA, streamA, now, spec);
      const b = applyEvents(batch, loadedB, streamB, now, spec, undefined, true);
      expect(written(b), `batch ${i}`).toEqual(written(a));
      // The copying step left its input as it was.
      expect([...loadedA].map(([u, s]) => [u, s === undefined ? '' : encodeUserState(s)])).toEqual(before);
      streamA = a.streamTime;
      streamB = b.streamTime;
      for (const [u, s] of a.states) copied.set(u, s);
      for (const [u, s] of b.states) stored.set(u, encodeUserState(s));
      touches += a.outbox.length;
      for (const [h, f] of a.counters) if (h === 'j:transfer-abandoned') absences += f.get('outcome:send') ?? 0;
    }
    // The traffic reached what the comparison is about.
    expect(copied.size).toBeGreaterThan(200);
    expect(touches).toBeGreaterThan(20);
    expect(absences).toBeGreaterThan(0);
  });
});
