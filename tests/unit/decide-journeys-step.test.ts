import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { AppEvent } from '../../src/contract/event.js';
import { loadConfig } from '../../src/config/load.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { applyEvents, applyTimers } from '../../src/state/decide.js';
import type { UserState } from '../../src/state/user-state.js';

/**
 * The state step with journeys on: decisions land in the outbox and the journey counters in
 * the same step result the commit writes atomically, and journey deadlines share the user's
 * one timer with the lifecycle. The rules themselves are unit-tested in their own files.
 */
const dir = mkdtempSync(join(tmpdir(), 'nudge-step-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'nudge.yaml');
writeFileSync(
  file,
  `
time: { reportingTimeZone: Asia/Shanghai, maxTriggerAge: 1h }
journeys:
  - id: transfer-abandoned
    priority: 50
    trigger: { type: notFollowedBy, first: { name: transfer_started }, then: { name: transfer_done }, within: 30m, by: flow_id }
    reEntry: { cooldown: 1h }
    channel: push
    template: transfer_reminder
    useGlobalHoldout: false
`,
);
const spec = compileStateSpec(loadConfig({ file, env: {} }));
const T0 = Date.UTC(2026, 10, 23, 3); // 11:00 in Shanghai: outside quiet hours
let n = 0;
const ev = (name: string, t: number, props: Record<string, string> = {}): AppEvent => ({
  eventId: `e${n++}`, userId: 'u1', name, timeMs: t, channel: 'app', props, value: 0, tz: 'Asia/Shanghai', deviceId: '', sentMs: 0,
});

describe('state step with journeys', () => {
  it('schedules the absence deadline as the user timer and decides the reminder when it is due', () => {
    const started = applyEvents([ev('login', T0), ev('transfer_started', T0 + 1000, { flow_id: 'f1' })], new Map(), 0, T0 + 2000, spec);
    expect(started.outbox).toEqual([]);
    const due = T0 + 1000 + 30 * 60_000;
    expect(started.timers.get('u1')).toBe(due);

    const state = started.states.get('u1') as UserState;
    const early = applyTimers(['u1'], new Map([['u1', state]]), due - 1, spec);
    expect(early.outbox).toEqual([]);

    const fired = applyTimers(['u1'], new Map([['u1', state]]), due, spec);
    expect(fired.outbox).toHaveLength(1);
    const job = JSON.parse(fired.outbox[0]!.value) as Record<string, unknown>;
    expect(job).toMatchObject({ userId: 'u1', journeyId: 'transfer-abandoned', channel: 'push', template: 'transfer_reminder', sendAt: due });
    expect(fired.outbox[0]!.field).toBe(job.touchId);
    expect(fired.counters.get('j:transfer-abandoned')).toEqual(
      new Map([
        ['outcome:send', 1],
        ['reason:sent', 1],
        ['entered:variant:', 1],
      ]),
    );
    // The same timer firing again (a replayed timer batch) decides the same touch id.
    const again = applyTimers(['u1'], new Map([['u1', state]]), due + 5, spec);
    expect(again.outbox.map((o) => o.field)).toEqual([fired.outbox[0]!.field]);
  });

  it('decides nothing when the transfer is finished in time, and clears the deadline', () => {
    const r = applyEvents(
      [ev('transfer_started', T0, { flow_id: 'f2' }), ev('transfer_done', T0 + 60_000, { flow_id: 'f2' })],
      new Map(),
      0,
      T0 + 61_000,
      spec,
    );
    // Only the lifecycle timer is left (new -> active after 7 days).
    expect(r.timers.get('u1')).toBe(T0 + 7 * 86_400_000);
    const later = applyTimers(['u1'], new Map([['u1', r.states.get('u1')!]]), T0 + 31 * 60_000, spec);
    expect(later.outbox).toEqual([]);
  });
});
