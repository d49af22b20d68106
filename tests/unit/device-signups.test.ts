import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { AppEvent } from '../../src/contract/event.js';
import { loadConfig } from '../../src/config/load.js';
import { NudgeError } from '../../src/errors.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { applyEvents } from '../../src/state/decide.js';
import { deviceHash, deviceSetId, planDeviceSignups, signupKey, type DeviceSignupReads } from '../../src/state/device-signups.js';
import type { StateSpec } from '../../src/state/spec.js';
import type { UserState } from '../../src/state/user-state.js';
import { Random } from '../../src/tools/loadgen/random.js';

/**
 * Device sign-ups in the pure state step: the lane's plan writes exactly the sign-ups the step
 * records (else a device would count users the state does not know, or miss some), and the
 * journey condition withholds on the count of the device's sign-ups around the user's own.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const NOW = Date.UTC(2026, 11, 7, 12);

const root = mkdtempSync(join(tmpdir(), 'nudge-devices-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let files = 0;

function yaml(extra: readonly string[] = []): string {
  return [
    'kafka: { brokers: ["127.0.0.1:9092"], topic: t, groupId: g }',
    'time: { reportingTimeZone: UTC, allowedLateness: 2h, maxTriggerAge: 30d }',
    'touches: { channels: { in_app: { adapter: log } } }',
    'behaviour:',
    '  deviceSignups:',
    '    - { name: signups_24h, match: { name: register }, within: 24h }',
    'journeys:',
    '  - id: referral',
    '    trigger: { type: event, match: { name: referral_qualified } }',
    '    conditions:',
    '      - { deviceSignups: signups_24h, atMost: 2 }',
    '    reEntry: never',
    '    channel: in_app',
    '    template: reward',
    '    useGlobalHoldout: false',
    ...extra,
  ].join('\n');
}

function load(text: string) {
  const dir = join(root, String(files++));
  mkdirSync(dir);
  const file = join(dir, 'nudge.yaml');
  writeFileSync(file, text + '\n');
  return loadConfig({ file, env: {} });
}

function refused(text: string): string {
  try {
    load(text);
  } catch (err) {
    if (err instanceof NudgeError) return err.message;
    throw err;
  }
  throw new Error('expected the config to be refused');
}

const spec: StateSpec = compileStateSpec(load(yaml()));

let seq = 0;
function ev(userId: string, name: string, timeMs: number, deviceId = ''): AppEvent {
  return { eventId: `e${seq++}`, userId, name, timeMs, channel: 'app', props: {}, value: 0, tz: 'UTC', deviceId, sentMs: 0 };
}

describe('planDeviceSignups agrees with the state step', () => {
  it('writes exactly the sign-ups applyEvents records, with duplicates, late, future and device-less events', () => {
    const rng = new Random(7);
    for (let round = 0; round < 300; round++) {
      const loaded = new Map<string, UserState | undefined>();
      const streamTime = NOW - 3 * HOUR;
      const events: AppEvent[] = [];
      for (let i = 0; i < 40; i++) {
        const user = `u${rng.int(8)}`;
        const name = rng.pick(['register', 'register', 'login', 'referral_qualified']);
        // Late (beyond 2h behind stream time), in time, and beyond the future skew.
        const t = rng.pick([NOW - 6 * HOUR, NOW - 2 * HOUR, NOW - HOUR + rng.int(HOUR), NOW + DAY]);
        const device = rng.chance(0.2) ? '' : `dev-${rng.int(3)}`;
        const e = ev(user, name, t, device);
        events.push(e);
        if (rng.chance(0.1)) events.push({ ...e }); // a producer retry: same id
      }
      // Some users were seen before, some already with a sign-up, some with these ids applied.
      for (let u = 0; u < 8; u += 2) {
        const prior = applyEvents([ev(`u${u}`, 'login', NOW - 5 * HOUR)], new Map(), 0, NOW, spec).states.get(`u${u}`)!;
        if (u % 4 === 0) prior.signups = { signups_24h: [deviceHash('dev-old'), NOW - 5 * HOUR] };
        prior.recentIds.push(events[u]!.eventId);
        loaded.set(`u${u}`, prior);
      }

      const plan = planDeviceSignups(events, loaded, streamTime, NOW, spec);
      const result = applyEvents(events, loaded, streamTime, NOW, spec);
      const recorded = [...result.states]
        .filter(([u, s]) => s.signups?.signups_24h !== undefined && loaded.get(u)?.signups === undefined)
        .map(([u, s]) => `${u} ${s.signups!.signups_24h![0]} ${s.signups!.signups_24h![1]}`)
        .sort();
      const written = (plan?.writes ?? []).map((w) => `${w.userId} ${w.device} ${w.at}`).sort();
      expect(written).toEqual(recorded);
    }
  });

  it('reads the device sets of users whose events can trigger the journey, and only those', () => {
    const loaded = new Map<string, UserState | undefined>();
    const known = applyEvents([ev('a', 'register', NOW - DAY, 'dev-a')], new Map(), 0, NOW, spec).states.get('a')!;
    loaded.set('a', known);
    const plan = planDeviceSignups(
      [ev('a', 'referral_qualified', NOW), ev('b', 'register', NOW, 'dev-b'), ev('b', 'referral_qualified', NOW), ev('c', 'login', NOW, 'dev-c'), ev('d', 'referral_qualified', NOW)],
      loaded,
      NOW - HOUR,
      NOW,
      spec,
    )!;
    expect([...plan.reads.keys()].sort()).toEqual([deviceSetId('signups_24h', deviceHash('dev-a')), deviceSetId('signups_24h', deviceHash('dev-b'))].sort());
    expect(plan.writes.map((w) => w.userId)).toEqual(['b']);
    // A batch with neither a sign-up nor a deciding event costs no round trip.
    expect(planDeviceSignups([ev('c', 'login', NOW, 'dev-c')], new Map(), 0, NOW, spec)).toBeNull();
  });

  it('keeps no device identifier in the state: only a hash', () => {
    const s = applyEvents([ev('a', 'register', NOW, 'IMEI-356938035643809')], new Map(), 0, NOW, spec).states.get('a')!;
    expect(JSON.stringify(s)).not.toContain('356938035643809');
    expect(s.signups).toEqual({ signups_24h: [deviceHash('IMEI-356938035643809'), NOW] });
  });
});

describe('the deviceSignups condition in the state step', () => {
  const device = deviceSetId('signups_24h', deviceHash('farm'));

  /** The device's sign-ups as the lane read them from Redis (none written by this batch). */
  const reads = (times: number[], written: string[] = []): DeviceSignupReads => ({
    sets: new Map([[device, times.map((t, i) => [`x${i}`, t] as const)]]),
    written: new Set(written.map((u) => signupKey(device, u))),
  });

  /** Decides user `u`'s qualification with the device's sign-up times as the lane read them. */
  function decide(signupAt: number, qualifyAt: number, deviceTimes: number[]) {
    const prior = applyEvents([ev('u', 'register', signupAt, 'farm')], new Map(), 0, NOW, spec).states.get('u')!;
    const r = applyEvents([ev('u', 'referral_qualified', qualifyAt)], new Map([['u', prior]]), qualifyAt, NOW, spec, reads(deviceTimes));
    const skips = r.counters.get('j:referral');
    return { sent: r.outbox.length, withheld: skips?.get('skipped:device_signups') ?? 0 };
  }

  const s = NOW - 3 * DAY;
  it('counts sign-ups within the window either side of the user\'s own, the user included, up to the event', () => {
    expect(decide(s, NOW, [s - DAY - 1, s, s + DAY + 1])).toEqual({ sent: 1, withheld: 0 }); // only the user inside
    expect(decide(s, NOW, [s - DAY, s, s + DAY])).toEqual({ sent: 0, withheld: 1 }); // bounds inclusive: 3 > 2
    expect(decide(s, NOW, [s - HOUR, s])).toEqual({ sent: 1, withheld: 0 }); // 2 = atMost
    // A sign-up after the qualifying event is not counted, whenever it was applied.
    expect(decide(s, s + HOUR, [s - HOUR, s, s + 2 * HOUR])).toEqual({ sent: 1, withheld: 0 });
    expect(decide(s, s + 3 * HOUR, [s - HOUR, s, s + 2 * HOUR])).toEqual({ sent: 0, withheld: 1 });
  });

  it('counts 0 for a user whose sign-up was never seen: rewarded', () => {
    const r = applyEvents([ev('v', 'referral_qualified', NOW)], new Map(), NOW, NOW, spec, reads([NOW, NOW, NOW, NOW]));
    expect(r.outbox).toHaveLength(1);
  });

  it('counts a sign-up this batch wrote only once the step applied it: one later in the partition does not count', () => {
    // x0 signed up in an earlier batch; u, then the qualification, then x1 and x2 in this one.
    // The lane wrote u, x1 and x2 to Redis before deciding, so the read holds all four.
    const sets = new Map([[device, [['x0', s - HOUR], ['u', s], ['x1', s + HOUR], ['x2', s + 2 * HOUR]] as const]]);
    const written = new Set(['u', 'x1', 'x2'].map((u) => signupKey(device, u)));
    const batch = [ev('u', 'register', s, 'farm'), ev('u', 'referral_qualified', s + 3 * HOUR), ev('x1', 'register', s + HOUR, 'farm'), ev('x2', 'register', s + 2 * HOUR, 'farm')];
    const later = applyEvents(batch, new Map(), 0, NOW, spec, { sets, written });
    expect(later.outbox).toHaveLength(1); // x0 and u: 2
    // The same sign-ups before the qualification in the partition: 4 > 2, withheld.
    const before = applyEvents([batch[0]!, batch[2]!, batch[3]!, batch[1]!], new Map(), 0, NOW, spec, { sets, written });
    expect(before.outbox).toHaveLength(0);
    expect(before.counters.get('j:referral')?.get('skipped:device_signups')).toBe(1);
  });

  it('records the first sign-up only: a second one on another device changes nothing', () => {
    const r = applyEvents([ev('u', 'register', s, 'farm'), ev('u', 'register', s + HOUR, 'other')], new Map(), 0, NOW, spec);
    expect(r.states.get('u')!.signups).toEqual({ signups_24h: [deviceHash('farm'), s] });
  });
});

describe('deviceSignups in the config', () => {
  it('compiles into the journey\'s conditions with the definition\'s window', () => {
    const journey = compileStateSpec(load(yaml())).rules!.journeys[0]!;
    expect(journey.conditions).toEqual([{ not: false, kind: 'deviceSignups', deviceSignups: 'signups_24h', withinMs: DAY, atLeast: null, atMost: 2 }]);
  });

  it('refuses an undefined name, a trigger that names no event, a keepFor below twice within, and a missing bound', () => {
    expect(refused(yaml().replace('{ deviceSignups: signups_24h, atMost: 2 }', '{ deviceSignups: signups_7d, atMost: 2 }'))).toContain(
      'journeys[0].conditions[0].deviceSignups: names no device sign-up count; define it under behaviour.deviceSignups (defined: signups_24h)',
    );
    expect(refused(yaml().replace('{ type: event, match: { name: referral_qualified } }', '{ type: inactive, for: 14d }'))).toContain(
      'journeys[0].conditions[0].deviceSignups: needs a trigger of type event or firstTime whose match names its events',
    );
    expect(refused(yaml().replace('within: 24h }', 'within: 24h, keepFor: 36h }'))).toContain('behaviour.deviceSignups[0].keepFor: must be at least twice within');
    expect(refused(yaml().replace('{ deviceSignups: signups_24h, atMost: 2 }', '{ deviceSignups: signups_24h }'))).toContain(
      'journeys[0].conditions[0]: a deviceSignups condition needs atLeast, atMost or both',
    );
  });
});
