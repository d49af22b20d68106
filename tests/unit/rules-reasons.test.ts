import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { JourneyStepResult } from '../../src/rules/decisions.js';
import { JOURNEY_STATE_BOUNDS } from '../../src/rules/journey-state.js';
import { CANCEL_REASONS, OUTCOME_OF, SEND_REASONS, SKIP_REASONS, TOUCH_REASONS } from '../../src/rules/reasons.js';
import type { JourneySpec, PolicySpec } from '../../src/rules/rules-spec.js';
import { DAY, event, HOUR, journey, match, MIN, policy, rules, SimUser, T0 } from '../support/rules-fixtures.js';

/**
 * Every reason code is produced by a scenario through the whole journey step, and documented.
 * Adding a code without a scenario here fails this test.
 */

const onX = { type: 'event' as const, match: match('x') };
const one = (over: Partial<JourneySpec> = {}, p: Partial<PolicySpec> = {}) => new SimUser(rules([journey({ id: 'j', trigger: onX, ...over })], { policy: policy(p) }));
const dayCap = { caps: [{ name: 'daily', channels: [] as string[], max: 1, window: { kind: 'calendar' as const, period: 'day' as const } }] };
const quiet = (action: 'defer' | 'drop') => ({ quietHours: { fromMinute: 22 * 60, toMinute: 8 * 60, action, channels: [] as string[] } });
const night = Date.UTC(2026, 10, 2, 15); // 23:00 in Shanghai

const TOUCH_SCENARIOS: Record<string, () => JourneyStepResult[]> = {
  sent: () => [one().event(event('x', T0))],
  quiet_hours_deferred: () => [one({}, quiet('defer')).event(event('x', night))],
  quiet_hours: () => [one({}, quiet('drop')).event(event('x', night))],
  holdout: () => Array.from({ length: 20 }, (_, i) => new SimUser(rules([journey({ id: 'j', trigger: onX, holdout: 0.9 })]), `u${i}`).event(event('x', T0))),
  global_holdout: () => Array.from({ length: 20 }, (_, i) => new SimUser(rules([journey({ id: 'j', trigger: onX })], { policy: policy({ globalHoldout: 0.5 }) }), `u${i}`).event(event('x', T0))),
  no_consent: () => [one({}, { consent: { defaultGranted: false, channelDefaults: {}, events: [] } }).event(event('x', T0))],
  opted_out: () => {
    const u = one({}, { consent: { defaultGranted: true, channelDefaults: {}, events: [{ match: match('stop'), channel: { kind: 'fixed', channel: 'push' }, grant: { kind: 'fixed', grant: false } }] } });
    return [u.event(event('stop', T0)), u.event(event('x', T0 + MIN))];
  },
  cap_channel: () => {
    const u = one({}, { caps: [{ name: 'push1', channels: ['push'], max: 1, window: { kind: 'rolling', ms: DAY } }] });
    return [u.event(event('x', T0)), u.event(event('x', T0 + HOUR))];
  },
  cap_all_channels: () => {
    const u = one({}, dayCap);
    return [u.event(event('x', T0)), u.event(event('x', T0 + HOUR))];
  },
  min_gap: () => {
    const u = one({}, { minGapMs: HOUR });
    return [u.event(event('x', T0)), u.event(event('x', T0 + MIN))];
  },
  priority_conflict: () => [
    new SimUser(rules([journey({ id: 'hi', priority: 5, trigger: onX }), journey({ id: 'lo', trigger: onX })], { policy: policy(dayCap) })).event(event('x', T0)),
  ],
  budget_total: () => {
    const u = one({ budget: { total: 1, perDay: null, costPerTouch: 2 } });
    return [u.event(event('x', T0))];
  },
  budget_daily: () => {
    const u = one({ budget: { total: null, perDay: 5, costPerTouch: 2 } });
    u.budgets = new Map([['j', { total: null, today: 1 }]]);
    return [u.event(event('x', T0))];
  },
};

const SKIP_SCENARIOS: Record<string, () => JourneyStepResult[]> = {
  stale_event: () => [one().event(event('x', T0), T0 + 2 * HOUR)],
  stale_timer: () => {
    const u = new SimUser(rules([journey({ id: 'j', trigger: { type: 'inactive', forMs: DAY, match: null } })]));
    return [u.event(event('x', T0)), u.tick(T0 + DAY + 2 * HOUR)];
  },
  conditions_not_met: () => [one({ conditions: [{ not: false, kind: 'stage', stages: ['dormant'] }] }).event(event('x', T0))],
  device_signups: () => [
    new SimUser(rules([journey({ id: 'j', trigger: onX, conditions: [{ not: false, kind: 'deviceSignups', deviceSignups: 'd', withinMs: DAY, atLeast: null, atMost: 1 }] })]), 'u1', {
      deviceSignups: { d: { at: T0 - HOUR, times: [T0 - 2 * HOUR, T0 - HOUR] } },
    }).event(event('x', T0)),
  ],
  reentry_never: () => {
    const u = one({ reEntry: { kind: 'never' } });
    return [u.event(event('x', T0)), u.event(event('x', T0 + DAY))];
  },
  reentry_cooldown: () => {
    const u = one({ reEntry: { kind: 'cooldown', ms: DAY } });
    return [u.event(event('x', T0)), u.event(event('x', T0 + HOUR))];
  },
  already_in_journey: () => {
    const u = one({ steps: [{ id: 'later', timing: { delayMs: HOUR, at: null, fallbackAt: null }, channels: ['push'], template: null }] });
    return [u.event(event('x', T0)), u.event(event('x', T0 + MIN))];
  },
  wait_limit: () => {
    const u = new SimUser(rules([journey({ id: 'j', trigger: { type: 'notFollowedBy', first: match('a'), then: match('b'), withinMs: HOUR, by: 'k' } })]));
    return Array.from({ length: JOURNEY_STATE_BOUNDS.absenceWaitsPerJourney + 1 }, (_, i) => u.event(event('a', T0 + i, { props: { k: String(i) } })));
  },
};

const CANCEL_SCENARIOS: Record<string, () => JourneyStepResult[]> = {
  followed_by: () => {
    const u = new SimUser(rules([journey({ id: 'j', trigger: { type: 'notFollowedBy', first: match('a'), then: match('b'), withinMs: HOUR, by: null } })]));
    return [u.event(event('a', T0)), u.event(event('b', T0 + MIN))];
  },
  exit: () => {
    const u = one({ exitOn: [match('stop')], steps: [{ id: 's', timing: { delayMs: HOUR, at: null, fallbackAt: null }, channels: ['push'], template: null }] });
    return [u.event(event('x', T0)), u.event(event('stop', T0 + MIN))];
  },
};

describe('every reason code is produced by a scenario', () => {
  it.each(Object.keys(TOUCH_REASONS))('touch reason %s', (code) => {
    const scenario = TOUCH_SCENARIOS[code];
    expect(scenario, `no scenario for ${code}`).toBeDefined();
    const touches = scenario!().flatMap((r) => r.touches).filter((t) => t.reason === code);
    expect(touches.length).toBeGreaterThan(0);
    for (const t of touches) expect(t.outcome).toBe(OUTCOME_OF[code as keyof typeof OUTCOME_OF]);
  });

  it.each(Object.keys(SKIP_REASONS))('skip reason %s', (code) => {
    const scenario = SKIP_SCENARIOS[code];
    expect(scenario, `no scenario for ${code}`).toBeDefined();
    expect(scenario!().flatMap((r) => r.skipped).some((s) => s.reason === code)).toBe(true);
  });

  it.each(Object.keys(CANCEL_REASONS))('cancel reason %s', (code) => {
    const scenario = CANCEL_SCENARIOS[code];
    expect(scenario, `no scenario for ${code}`).toBeDefined();
    expect(scenario!().flatMap((r) => r.cancellations).some((c) => c.reason === code)).toBe(true);
  });

  it('has no scenario for a code that does not exist', () => {
    expect(Object.keys(TOUCH_SCENARIOS).sort()).toEqual(Object.keys(TOUCH_REASONS).sort());
    expect(Object.keys(SKIP_SCENARIOS).sort()).toEqual(Object.keys(SKIP_REASONS).sort());
    expect(Object.keys(CANCEL_SCENARIOS).sort()).toEqual(Object.keys(CANCEL_REASONS).sort());
  });
});

describe('reason codes are documented', () => {
  const docs = readFileSync(fileURLToPath(new URL('../../docs/config.md', import.meta.url)), 'utf8');
  it.each([...Object.keys(TOUCH_REASONS), ...Object.keys(SKIP_REASONS), ...Object.keys(CANCEL_REASONS), ...Object.keys(SEND_REASONS)])('%s is in docs/config.md', (code) => {
    expect(docs).toContain(`| \`${code}\` |`);
  });
});
