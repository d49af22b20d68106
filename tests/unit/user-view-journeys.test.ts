import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { AppEvent } from '../../src/contract/event.js';
import { loadConfig } from '../../src/config/load.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { applyEvents, applyTimers } from '../../src/state/decide.js';
import { userView } from '../../src/state/queries.js';
import type { UserState } from '../../src/state/user-state.js';

/** GET /v1/users/{id} shows what the user is in and the last touch per journey (DESIGN §2.3). */
const dir = mkdtempSync(join(tmpdir(), 'nudge-view-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'nudge.yaml');
writeFileSync(
  file,
  `
time: { reportingTimeZone: Asia/Shanghai, maxTriggerAge: 1h }
journeys:
  - id: transfer-abandoned
    trigger: { type: notFollowedBy, first: { name: transfer_started }, then: { name: transfer_done }, within: 30m, by: flow_id }
    exitOn: [{ name: account_closed }]
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
const iso = (ms: number) => new Date(ms).toISOString();

describe('user view: journeys', () => {
  it('is empty for a user no journey has seen', () => {
    const s = applyEvents([ev('login', T0)], new Map(), 0, T0, spec).states.get('u1') as UserState;
    expect(userView('u1', s, T0, spec).journeys).toEqual({});
  });

  it('shows the entry with its deadline, then the touch, then the exit', () => {
    const due = T0 + 1000 + 30 * 60_000;
    const waiting = applyEvents([ev('login', T0), ev('transfer_started', T0 + 1000, { flow_id: 'f1' })], new Map(), 0, T0 + 2000, spec).states.get('u1') as UserState;
    // Awaiting transfer_done: an absence wait, not an entry; the user enters when it fires.
    expect(userView('u1', waiting, T0 + 2000, spec).journeys).toEqual({});

    const fired = applyTimers(['u1'], new Map([['u1', waiting]]), due, spec);
    const touched = fired.states.get('u1') as UserState;
    const j = userView('u1', touched, due, spec).journeys['transfer-abandoned'];
    expect(j).toMatchObject({ enteredAt: iso(due), group: 'variant', active: true, lastTouch: { at: iso(due), channel: 'push' } });
    expect(typeof j?.lastTouch?.step).toBe('string');

    const exited = applyEvents([ev('account_closed', due + 5000)], new Map([['u1', touched]]), due, due + 5000, spec).states.get('u1') as UserState;
    expect(userView('u1', exited, due + 5000, spec).journeys['transfer-abandoned']).toMatchObject({ active: false, exitedAt: iso(due + 5000) });
  });
});
