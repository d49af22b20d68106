import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { AppEvent } from '../../src/contract/event.js';
import { loadConfig } from '../../src/config/load.js';
import { NudgeError } from '../../src/errors.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { applyEvents } from '../../src/state/decide.js';
import { deviceHash, deviceSetId, planDeviceSignups, type DeviceSignupReads, type StoredSignup } from '../../src/state/device-signups.js';
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

/**
 * One lane over a log, cut into batches as given, with an in-memory stand-in for the device sets
 * (the Redis semantics are checked in tests/integration/device-store.test.ts): each batch reads
 * what planDeviceSignups asks, is decided, writes the sign-ups it recorded (NX) and commits.
 * `crashed`: an earlier attempt decided the whole log in one batch and wrote its sign-ups, then
 * died before its commit. Returns every touch id decided and every device_signups skip.
 */
function runLane(log: readonly AppEvent[], cuts: readonly number[], others: readonly StoredSignup[], crashed = false): string[] {
  const store = new Map<string, StoredSignup[]>();
  const write = (set: string, s: StoredSignup) => {
    const list = store.get(set) ?? [];
    if (!list.some((x) => x.partition === s.partition && x.offset === s.offset && x.userId === s.userId)) list.push(s);
    store.set(set, list.sort((a, b) => a.at - b.at));
  };
  for (const o of others) write(deviceSetId('signups_24h', deviceHash('farm')), o);
  const offsetOf = new Map(log.map((e, i) => [e.eventId, i]));
  const states = new Map<string, UserState | undefined>();
  let fence = -1;
  let stream = 0;
  const out: string[] = [];
  const step = (batch: readonly AppEvent[], commit: boolean) => {
    const loaded = new Map(batch.map((e) => [e.userId, states.get(e.userId)]));
    const plan = planDeviceSignups(batch, loaded, spec);
    const sets = plan === null ? undefined : new Map([...plan].map(([set, r]) => [set, (store.get(set) ?? []).filter((x) => x.at >= r.from && x.at <= r.to)]));
    const r = applyEvents(batch, loaded, stream, NOW, spec, sets && { sets, partition: 0, fence });
    for (const s of r.signups) write(s.set, { partition: 0, offset: offsetOf.get(s.eventId)!, userId: s.userId, at: s.at });
    if (!commit) return;
    for (const [u, st] of r.states) states.set(u, st);
    fence = offsetOf.get(batch.at(-1)!.eventId)!;
    stream = Math.max(stream, r.streamTime);
    out.push(...r.outbox.map((o) => o.field));
    const skips = r.counters.get('j:referral')?.get('skipped:device_signups') ?? 0;
    for (let k = 0; k < skips; k++) out.push('withheld');
  };
  if (crashed) step(log, false);
  let from = 0;
  for (const cut of [...cuts, log.length]) {
    if (cut > from) step(log.slice(from, cut), true);
    from = Math.max(from, cut);
  }
  return out.sort();
}

describe('device sign-ups do not depend on how the batches were cut', () => {
  it('decides the same touches and withholdings for any cut, and after a crashed attempt of the whole log', () => {
    const rng = new Random(11);
    let withheld = 0;
    let rewarded = 0;
    for (let round = 0; round < 200; round++) {
      const log: AppEvent[] = [];
      let t = NOW - 2 * DAY;
      for (let i = 0; i < 30; i++) {
        t += rng.int(2 * HOUR);
        const user = `u${rng.int(10)}`;
        const name = rng.pick(['register', 'register', 'referral_qualified', 'login']);
        // Out of order within the allowed lateness: a sign-up's time can precede one applied before it.
        log.push(ev(user, name, t - rng.int(HOUR), rng.pick(['farm', 'farm', 'other', ''])));
      }
      // Sign-ups another lane applied (counted whatever its progress).
      const others = Array.from({ length: rng.int(3) }, (_, k) => ({ partition: 9, offset: k, userId: `o${k}`, at: NOW - 2 * DAY + rng.int(2 * DAY) }));
      const whole = runLane(log, [], others);
      for (let c = 0; c < 5; c++) {
        const cuts = [...new Set(Array.from({ length: 1 + rng.int(6) }, () => rng.int(log.length)))].sort((a, b) => a - b);
        expect(runLane(log, cuts, others)).toEqual(whole);
        expect(runLane(log, cuts, others, true)).toEqual(whole);
      }
      withheld += whole.filter((x) => x === 'withheld').length;
      rewarded += whole.filter((x) => x !== 'withheld').length;
    }
    // The scenario reaches both outcomes, so a wrong count shows.
    expect(withheld).toBeGreaterThan(50);
    expect(rewarded).toBeGreaterThan(50);
  });

  it('reads the device sets of users whose events can trigger the journey, and only those', () => {
    const loaded = new Map<string, UserState | undefined>();
    const known = applyEvents([ev('a', 'register', NOW - DAY, 'dev-a')], new Map(), 0, NOW, spec).states.get('a')!;
    loaded.set('a', known);
    const plan = planDeviceSignups(
      [ev('a', 'referral_qualified', NOW), ev('b', 'register', NOW, 'dev-b'), ev('b', 'referral_qualified', NOW), ev('c', 'register', NOW, 'dev-c'), ev('d', 'referral_qualified', NOW)],
      loaded,
      spec,
    )!;
    expect(plan).toEqual(
      new Map([
        [deviceSetId('signups_24h', deviceHash('dev-a')), { from: NOW - 2 * DAY, to: NOW }],
        [deviceSetId('signups_24h', deviceHash('dev-b')), { from: Number.NEGATIVE_INFINITY, to: Number.POSITIVE_INFINITY }],
      ]),
    );
    // A batch with no deciding event costs no round trip, sign-ups or not.
    expect(planDeviceSignups([ev('c', 'register', NOW, 'dev-c')], new Map(), spec)).toBeNull();
  });

  it('keeps no device identifier in the state: only a hash', () => {
    const s = applyEvents([ev('a', 'register', NOW, 'IMEI-356938035643809')], new Map(), 0, NOW, spec).states.get('a')!;
    expect(JSON.stringify(s)).not.toContain('356938035643809');
    expect(s.signups).toEqual({ signups_24h: [deviceHash('IMEI-356938035643809'), NOW] });
  });
});

describe('the deviceSignups condition in the state step', () => {
  const device = deviceSetId('signups_24h', deviceHash('farm'));

  /** The device's sign-ups as the lane read them from Redis, all applied by another lane. */
  const reads = (times: number[]): DeviceSignupReads => ({
    sets: new Map([[device, times.map((at, i) => ({ partition: 1, offset: i, userId: `x${i}`, at }))]]),
    partition: 0,
    fence: 100,
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

  it('counts its own lane\'s sign-ups above the fence only once this walk applied them: one later in the partition does not count', () => {
    // x0: another lane. u, x1, x2: this lane above its fence (an attempt that crashed before its
    // commit wrote them); in this batch u signs up, then qualifies, then x1 and x2 sign up.
    const stored: StoredSignup[] = [
      { partition: 1, offset: 7, userId: 'x0', at: s - HOUR },
      { partition: 0, offset: 101, userId: 'u', at: s },
      { partition: 0, offset: 103, userId: 'x1', at: s + HOUR },
      { partition: 0, offset: 104, userId: 'x2', at: s + 2 * HOUR },
    ];
    const reads = { sets: new Map([[device, stored]]), partition: 0, fence: 100 };
    const batch = [ev('u', 'register', s, 'farm'), ev('u', 'referral_qualified', s + 3 * HOUR), ev('x1', 'register', s + HOUR, 'farm'), ev('x2', 'register', s + 2 * HOUR, 'farm')];
    const later = applyEvents(batch, new Map(), 0, NOW, spec, reads);
    expect(later.outbox).toHaveLength(1); // x0 and u: 2
    expect(later.signups.map((x) => x.userId)).toEqual(['u', 'x1', 'x2']);
    // The same sign-ups before the qualification in the partition: 4 > 2, withheld.
    const before = applyEvents([batch[0]!, batch[2]!, batch[3]!, batch[1]!], new Map(), 0, NOW, spec, reads);
    expect(before.outbox).toHaveLength(0);
    expect(before.counters.get('j:referral')?.get('skipped:device_signups')).toBe(1);
    // Committed (at or below the fence), this lane's sign-ups count like another lane's.
    const committed = { ...reads, fence: 104 };
    expect(applyEvents([ev('y', 'register', s, 'farm'), ev('y', 'referral_qualified', s + 3 * HOUR)], new Map(), 0, NOW, spec, committed).outbox).toHaveLength(0);
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
