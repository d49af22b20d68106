import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { AppEvent } from '../../src/contract/event.js';
import { loadConfig } from '../../src/config/load.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { decideJourneys } from '../../src/rules/decide-journeys.js';
import type { JourneyInput, JourneyStepResult } from '../../src/rules/decisions.js';
import { eventPlan, specWithFullPlanForTests, type EventPlan } from '../../src/rules/event-index.js';
import { inRange, matchesFilter } from '../../src/rules/filter.js';
import type { JourneyUserState } from '../../src/rules/journey-state.js';
import type { Filter, JourneySpec, RulesSpec } from '../../src/rules/rules-spec.js';
import type { UserFacts } from '../../src/rules/user-facts.js';
import { applyEvents, applyTimers, type StepResult } from '../../src/state/decide.js';
import { matches, type StateSpec } from '../../src/state/spec.js';
import { encodeUserState, type UserState } from '../../src/state/user-state.js';
import { dayNumber } from '../../src/time/calendar.js';
import { Random } from '../../src/tools/loadgen/random.js';
import { TrafficGenerator } from '../../src/tools/loadgen/traffic.js';

/**
 * The event index (rules/event-index.ts) lists, per event name, the journeys an event can
 * concern in each role, so the journey step does not test every filter of every journey on
 * every event. It must only ever be an optimisation: for any event, on any state, the journey
 * step must decide exactly what it decides with a plan that lists every journey in every role
 * and has consent on (each role's code still tests the real filter). `specWithFullPlanForTests`
 * gives a copy of a spec whose index is that full plan; both are run in lockstep, each on its
 * own journey state, and every output is compared: touches, skips, cancellations, conversions,
 * late follow-ups, consent changes, scheduled waits, next due time and the new journey state.
 *
 * Inputs: the shipped playbook, and seeded generated journeys whose filters have names, lists
 * of names, no names (props, channel or value only) or nothing at all, in triggers of every
 * type, exits, conversions, notFollowedBy `then`s, inactivity matches (null or not) and consent
 * rules; driven by seeded random events, late and stale ones included, and timer ticks. On each
 * event the plan is also checked directly: every journey whose filter for a role matches the
 * event must be listed in that role (a dropped journey shows there even when the user's state
 * makes it decide nothing). Last, the shipped playbook on live banking traffic through the
 * state step (applyEvents and applyTimers), every batch's writes compared.
 */

const ZONE = 'Asia/Shanghai';
const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 10, 2, 1); // 09:00 in Shanghai

const dir = mkdtempSync(path.join(tmpdir(), 'nudge-event-index-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function compileYaml(name: string, config: unknown): StateSpec {
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(config));
  return compileStateSpec(loadConfig({ file, env: {} }));
}

const playbook = (): StateSpec => compileStateSpec(loadConfig({ file: path.resolve('config', 'nudge.yaml'), env: {} }));

// ---------------------------------------------------------------------------------------------
// Generated journeys: every trigger type, filters with and without names.

const NAMES = ['open', 'view', 'buy', 'cancel', 'start', 'done', 'ping', 'opt'];
const PROP_TESTS: ReadonlyArray<readonly [string, unknown]> = [
  ['kind', 'x'],
  ['kind', 'y'],
  ['tier', { in: ['gold', 'silver'] }],
  ['amount', { gte: 10, lt: 100 }],
  ['amount', { gt: 50 }],
  ['flag', { exists: true }],
  ['flag', { exists: false }],
];

/** A journey filter: names, a list of names, no names at all (props, channel, value), or empty. */
function genMatch(r: Random, noNames = false): Record<string, unknown> {
  const props = (): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (let i = 0, n = 1 + r.int(2); i < n; i++) {
      const [k, v] = r.pick(PROP_TESTS);
      out[k] = v;
    }
    return out;
  };
  switch (noNames ? r.pick([4, 5, 6, 8, 9]) : r.int(10)) {
    case 0:
      return { name: r.pick(NAMES) };
    case 1:
      return { name: [r.pick(NAMES), r.pick(NAMES.filter((n) => n !== 'open')), 'open'].filter((n, i, a) => a.indexOf(n) === i) };
    case 2:
      return { name: r.pick(NAMES), channel: r.pick(['web', ['app', 'wechat']]) };
    case 3:
      return { name: r.pick(NAMES), props: props() };
    case 4:
      return { props: props() };
    case 5:
      return { channel: r.pick(['web', 'wechat']) };
    case 6:
      return { value: r.pick([{ gte: 100 }, { lt: 50 }]) };
    case 7:
      return { name: r.pick(NAMES), value: { gte: 100 } };
    case 8:
      return { channel: 'app', props: props() };
    default:
      return {};
  }
}

/** `second`: the second journey of the type in the spec, the variant the first one is not. */
function genTrigger(r: Random, type: string, second: boolean): Record<string, unknown> {
  switch (type) {
    case 'event':
      return { type, match: genMatch(r) };
    case 'count':
      return { type, counter: r.pick(['c_named', 'c_props', 'c_channel', 'c_any']), atLeast: 2 + r.int(2) };
    case 'inactive':
      return second ? { type, for: r.pick(['1h', '6h', '2d']), match: genMatch(r) } : { type, for: r.pick(['1h', '6h', '2d']) };
    case 'notFollowedBy':
      return { type, first: genMatch(r), then: genMatch(r, second), within: r.pick(['10m', '30m', '2h']), ...(r.chance(0.6) ? { by: 'flow' } : {}) };
    case 'streak':
      return { type, streak: r.pick(['s_named', 's_any']), reaches: 2 + r.int(2) };
    case 'stage':
      return r.chance(0.5) ? { type, to: r.pick(['dormant', 'active', 'reactivated']) } : { type, from: ['dormant', 'churned'], to: 'reactivated' };
    default:
      return { type: 'firstTime', match: genMatch(r) };
  }
}

const TRIGGER_TYPES = ['event', 'count', 'inactive', 'notFollowedBy', 'streak', 'stage', 'firstTime'];

function generatedConfig(seed: number, count: number): unknown {
  const r = new Random(seed);
  const journeys = [];
  for (let i = 0; i < count; i++) {
    // Each trigger type twice first (in both variants), then at random.
    const n = TRIGGER_TYPES.length;
    const type = i < 2 * n ? TRIGGER_TYPES[i % n]! : r.pick(TRIGGER_TYPES);
    const second = i < 2 * n ? i >= n : r.chance(0.5);
    // The first journey exits, and converts, on filters without names; the rest at random.
    const exitOn = i === 0 ? [genMatch(r, true)] : [];
    for (let k = 0, m = r.int(3); k < m; k++) exitOn.push(genMatch(r));
    // A delayed first step is a pending touch an exit can call off; a second step is a step wait.
    const steps = [{ id: 'first', ...(r.chance(0.3) ? { delay: r.pick(['15m', '2h']) } : {}) }, ...(r.chance(0.5) ? [{ id: 'second', delay: r.pick(['20m', '3h', '1d']) }] : [])];
    journeys.push({
      id: `j${String(i).padStart(2, '0')}-${type.toLowerCase()}`,
      priority: r.int(41) - 20,
      trigger: genTrigger(r, type, second),
      ...(r.chance(0.15) ? { conditions: [{ stage: ['active', 'new', 'reactivated'] }] } : {}),
      exitOn,
      reEntry: r.pick<unknown>(['never', { cooldown: '10m' }, { cooldown: '2h' }, { cooldown: '1d' }]),
      channel: r.pick(['push', 'sms', 'in_app', ['push', 'in_app']]),
      template: `t${i}`,
      steps,
      useGlobalHoldout: false,
      // A holdout needs a conversion to measure (the config refuses one without).
      ...(i === 0 || r.chance(0.6) ? { conversion: { match: genMatch(r, i === 0), within: r.pick(['1h', '1d']) }, holdout: r.pick(['0%', '10%']) } : {}),
    });
  }
  return {
    time: { reportingTimeZone: ZONE, maxTriggerAge: '1h' },
    behaviour: {
      counters: [
        { name: 'c_named', match: { name: 'view' }, keep: 3, within: '1d' },
        { name: 'c_props', match: { props: { kind: 'x' } }, keep: 3, within: '1d' },
        { name: 'c_channel', match: { channel: 'web' }, keep: 3, within: '1d' },
        { name: 'c_any', match: {}, keep: 3, within: '1h' },
      ],
      streaks: [
        { name: 's_named', match: { name: 'open' } },
        { name: 's_any', match: {} },
      ],
      traits: ['kind'],
    },
    policy: {
      consent: {
        default: 'granted',
        events: [
          { match: { name: 'opt' }, channelProp: 'ch', grantProp: 'on' },
          { match: { props: { unsubscribe: { exists: true } } }, channel: 'sms', grant: false },
          { match: { channel: 'web', props: { optin: 'push' } }, channel: 'push', grant: true },
        ],
      },
      quietHours: { from: '23:00', to: '07:00', action: 'defer' },
      caps: [
        { name: 'push_daily', channel: 'push', max: 4, per: 'day' },
        { name: 'all_hourly', max: 6, within: '1h' },
      ],
      minGap: '1m',
    },
    journeys,
  };
}

// ---------------------------------------------------------------------------------------------
// Random events for a spec: names, channels, props and values its filters speak of, and more.

interface Vocab {
  /** Every filter of the spec: most events are built to pass one of them. */
  filters: Filter[];
  names: string[];
  channels: string[];
  props: Array<[string, string[]]>;
  values: number[];
  /** The notFollowedBy pairing props (`by`). */
  pairing: string[];
}

function filtersOf(spec: RulesSpec): Filter[] {
  const out: Filter[] = [];
  for (const j of spec.journeys) {
    const t = j.trigger;
    if (t.type === 'event' || t.type === 'count' || t.type === 'firstTime') out.push(t.match);
    else if (t.type === 'notFollowedBy') out.push(t.first, t.then);
    else if (t.type === 'inactive' && t.match !== null) out.push(t.match);
    out.push(...j.exitOn);
    if (j.conversion !== null) out.push(j.conversion.match);
  }
  for (const r of spec.policy.consent.events) out.push(r.match);
  return out;
}

type Range = { gt?: number; gte?: number; lt?: number; lte?: number };
const around = (r: Range): number[] => [r.gt, r.gte, r.lt, r.lte].flatMap((b) => (b === undefined ? [] : [b - 1, b, b + 1]));

function vocabOf(spec: RulesSpec): Vocab {
  const names = new Set<string>();
  const channels = new Set(['app', 'web', 'wechat', 'mini_program']);
  const props = new Map<string, Set<string>>();
  const values = new Set([0, 1, 20, 60, 500, 5000]);
  const add = (key: string, ...vs: string[]) => {
    let s = props.get(key);
    if (s === undefined) props.set(key, (s = new Set()));
    for (const v of vs) s.add(v);
  };
  const filters = filtersOf(spec);
  for (const f of filters) {
    for (const n of f.names) names.add(n);
    for (const c of f.channels) channels.add(c);
    for (const { key, test } of f.props) {
      if (test.kind === 'equals') add(key, test.value, `${test.value}_not`);
      else if (test.kind === 'in') add(key, ...test.values, 'none_of_them');
      else if (test.kind === 'range') add(key, ...around(test.range).map(String), 'NaN', '');
      else add(key, '1');
    }
    if (f.value !== null) for (const b of around(f.value)) values.add(b);
  }
  const pairing = new Set<string>();
  for (const j of spec.journeys) if (j.trigger.type === 'notFollowedBy' && j.trigger.by !== null) pairing.add(j.trigger.by);
  for (const k of pairing) add(k, 'f1', 'f2', 'f3');
  for (const r of spec.policy.consent.events) {
    if (r.channel.kind === 'prop') add(r.channel.prop, 'push', 'sms', 'in_app', 'Not A Channel');
    if (r.grant.kind === 'prop') add(r.grant.prop, 'true', 'false', 'yes', 'perhaps');
  }
  return { filters, names: [...names].sort(), channels: [...channels].sort(), props: [...props].map(([k, s]) => [k, [...s]]), values: [...values], pairing: [...pairing] };
}

type EventFields = Pick<AppEvent, 'name' | 'channel' | 'props' | 'value'>;

/**
 * Most events are built to pass one of the spec's filters (so triggers, exits, follow-ups,
 * conversions and consent rules act), some then spoilt in one part; the rest are random, with
 * names no filter lists among them.
 */
function randomEvent(r: Random, v: Vocab): EventFields {
  const props = Object.create(null) as Record<string, string>;
  for (const [key, vs] of v.props) if (r.chance(0.25)) props[key] = r.pick(vs);
  const e: EventFields = { name: r.chance(0.85) ? r.pick(v.names) : r.pick(UNLISTED), channel: r.pick(v.channels), props, value: r.pick(v.values) };
  for (const k of v.pairing) if (r.chance(0.8)) props[k] = r.pick(['f1', 'f2']);
  if (r.chance(0.3)) return e;
  const f = r.pick(v.filters);
  if (f.names.length > 0) e.name = r.pick(f.names);
  if (f.channels.length > 0) e.channel = r.pick(f.channels);
  const passing = (range: Range): number => [0, ...around(range)].find((n) => inRange(range, n)) ?? 0;
  for (const { key, test } of f.props) {
    if (test.kind === 'equals') props[key] = test.value;
    else if (test.kind === 'in') props[key] = r.pick(test.values);
    else if (test.kind === 'range') props[key] = String(passing(test.range));
    else if (test.present) props[key] = '1';
    else delete props[key];
  }
  if (f.value !== null) e.value = passing(f.value);
  if (r.chance(0.15)) {
    const spoil = r.int(4);
    if (spoil === 0) e.name = r.pick(UNLISTED);
    else if (spoil === 1) e.channel = r.pick(v.channels);
    else if (spoil === 2) e.value = r.pick(v.values);
    else for (const { key } of f.props) delete props[key];
  }
  return e;
}

/** Names no filter lists (only filters without names can match them). */
const UNLISTED = ['unlisted_event', 'page_view_2', 'constructor'];
const STAGES = ['new', 'active', 'dormant', 'churned', 'reactivated'];

interface SimUser {
  id: string;
  seen: boolean;
  facts: UserFacts;
  /** The journey state with the real index, and with the full plan. */
  indexed: JourneyUserState | null;
  full: JourneyUserState | null;
  /** The user's next journey timer (the same on both sides, or the comparison failed). */
  due: number | null;
}

interface Tally {
  steps: number;
  touches: number;
  skipped: Set<string>;
  cancellations: Set<string>;
  conversions: number;
  lateFollowUps: number;
  consentChanges: number;
  scheduled: Set<string>;
  /** Events whose real plan left out some journey of some role (the index did prune). */
  pruned: number;
}

/** The journeys each role must list for `e`: those whose filter for that role matches it. */
function mustList(spec: RulesSpec, e: AppEvent): Record<Exclude<keyof EventPlan, 'consent'>, JourneySpec[]> & { consent: boolean } {
  const m = (f: Filter) => matchesFilter(f, e);
  const js = spec.journeys;
  return {
    exits: js.filter((j) => j.exitOn.some(m)),
    followUps: js.filter((j) => j.trigger.type === 'notFollowedBy' && m(j.trigger.then)),
    inactivity: js.filter((j) => j.trigger.type === 'inactive' && (j.trigger.match === null || m(j.trigger.match))),
    conversions: js.filter((j) => j.conversion !== null && m(j.conversion.match)),
    triggers: js.filter((j) => {
      const t = j.trigger;
      if (t.type === 'event' || t.type === 'count' || t.type === 'firstTime') return m(t.match);
      if (t.type === 'notFollowedBy') return m(t.first);
      return t.type === 'streak' || t.type === 'stage';
    }),
    consent: spec.policy.consent.events.some((r) => m(r.match)),
  };
}

const ROLES = ['exits', 'followUps', 'inactivity', 'conversions', 'triggers'] as const;

/**
 * Runs `steps` random events and timer ticks over a few users through `decideJourneys` with the
 * real index and with the full plan, comparing every result. The facts follow the events the
 * way the state step keeps them (counters, streaks, traits), with random stage changes.
 */
function lockstep(stateSpec: StateSpec, seed: number, steps: number): Tally {
  const spec = stateSpec.rules!;
  const full = specWithFullPlanForTests(spec);
  const vocab = vocabOf(spec);
  const r = new Random(seed);
  const tally: Tally = { steps: 0, touches: 0, skipped: new Set(), cancellations: new Set(), conversions: 0, lateFollowUps: 0, consentChanges: 0, scheduled: new Set(), pruned: 0 };
  const users: SimUser[] = [];
  for (let i = 0; i < 6; i++) {
    const hours = r.chance(0.5) ? null : Array.from({ length: 24 }, (_, h) => (h === 12 + i ? 9 : r.int(2)));
    users.push({
      id: `u${i}`,
      seen: false,
      indexed: null,
      full: null,
      due: null,
      facts: { firstSeen: T0, lastSeen: T0, stage: 'new', stageSince: T0, tz: i === 5 ? 'Europe/London' : '', traits: {}, counters: {}, sums: {}, streaks: {}, activeHours: hours, deviceSignups: {} },
    });
  }
  let now = T0;
  let seq = 0;

  const run = (u: SimUser, input: Omit<JourneyInput, 'state' | 'userId'>, label: () => string): void => {
    const a = decideJourneys(spec, { ...input, userId: u.id, state: u.indexed });
    const b = decideJourneys(full, { ...input, userId: u.id, state: u.full });
    // Cheap first; on a difference, toEqual shows it (and passes if only key order differed).
    if (JSON.stringify(a) !== JSON.stringify(b)) expect(a, label()).toEqual(b);
    u.indexed = a.state;
    u.full = b.state;
    u.due = a.nextDueAt;
    count(a);
  };
  const count = (x: JourneyStepResult): void => {
    tally.steps++;
    tally.touches += x.touches.length;
    for (const s of x.skipped) tally.skipped.add(s.reason);
    for (const c of x.cancellations) tally.cancellations.add(`${c.reason}:${c.kind}`);
    tally.conversions += x.conversions.length;
    tally.lateFollowUps += x.lateFollowUps.length;
    tally.consentChanges += x.consentChanges.length;
    for (const w of x.scheduled) tally.scheduled.add(w.kind);
  };

  let last = users[0]!;
  for (let i = 0; i < steps; i++) {
    // The wall clock: mostly seconds to minutes, sometimes hours, now and then days.
    const jump = r.next();
    const next = now + (jump < 0.75 ? 5_000 + r.int(5 * MIN) : jump < 0.95 ? 10 * MIN + r.int(2 * HOUR) : jump < 0.99 ? 6 * HOUR + r.int(2 * DAY) : 5 * DAY + r.int(12 * DAY));

    // The timer sweep: the earliest due user, mostly on time, sometimes late (stale_timer); if
    // it skips, the wait fires in the user's next event instead.
    let dueUser: SimUser | undefined;
    for (const x of users) if (x.due !== null && x.due <= next && (dueUser === undefined || x.due < dueUser.due!)) dueUser = x;
    if (dueUser !== undefined && r.chance(0.85)) {
      const u = dueUser;
      now = Math.max(now, u.due! + (r.chance(0.1) ? r.int(3 * HOUR) : 0));
      run(u, { now, before: u.facts, after: u.facts, event: null }, () => `step ${i}: due tick of ${u.id} at ${now}`);
      continue;
    }
    now = next;

    // Users come in sessions: the last user again, more often than not. The last two users are
    // rarely active, so they go idle for days (inactivity journeys fire, then they come back).
    const u = r.chance(0.6) ? last : r.weighted(users.map((x, k) => [x, k < 4 ? 1 : 0.04] as const));
    last = u;
    if (u.seen && r.chance(0.05)) {
      // A tick with a stage recorded on time (sometimes long ago: stale).
      const before = u.facts;
      u.facts = { ...before, stage: r.pick(STAGES), stageSince: now - r.pick([0, 10 * MIN, 3 * HOUR]) };
      run(u, { now, before, after: u.facts, event: null }, () => `step ${i}: stage tick of ${u.id} at ${now}`);
      continue;
    }

    // An event: on time, a little late, stale (older than maxTriggerAge), or slightly ahead.
    const lag = r.next();
    const timeMs = lag < 0.8 ? now : lag < 0.9 ? now - r.int(50 * MIN) : lag < 0.97 ? now - HOUR - r.int(5 * HOUR) : now + r.int(5 * MIN);
    const fields = randomEvent(r, vocab);
    const props = fields.props;
    const e: AppEvent = { eventId: `e${seq++}`, userId: u.id, timeMs, tz: u.facts.tz, deviceId: '', sentMs: 0, ...fields };

    // The index must list every journey whose filter for a role matches the event.
    const plan = eventPlan(spec, e.name);
    const must = mustList(spec, e);
    const missing = ROLES.flatMap((role) => must[role].filter((j) => !plan[role].includes(j)).map((j) => `${role}: ${j.id}`));
    if (must.consent && !plan.consent) missing.push('consent');
    if (missing.length > 0) expect(missing, `step ${i}: the plan of ${JSON.stringify(e)}`).toEqual([]);
    if (ROLES.some((role) => plan[role].length < spec.journeys.length) || !plan.consent) tally.pruned++;

    const before = u.seen ? u.facts : null;
    u.seen = true;
    const f = u.facts;
    const counters = { ...f.counters };
    for (const c of stateSpec.counters) {
      if (matches(c.filter, e)) counters[c.name] = [...(counters[c.name] ?? []), e.timeMs].sort((x, y) => x - y).slice(-c.keep);
    }
    const streaks = { ...f.streaks };
    const today = dayNumber(e.timeMs, f.tz !== '' ? f.tz : ZONE);
    for (const s of stateSpec.streaks) {
      if (!matches(s.filter, e)) continue;
      const cur = streaks[s.name];
      streaks[s.name] = cur === undefined || cur.last < today - 1 ? { current: 1, last: today } : cur.last === today - 1 ? { current: cur.current + 1, last: today } : cur;
    }
    const traits = { ...f.traits };
    for (const k of stateSpec.traitKeys) if (props[k] !== undefined) traits[k] = props[k];
    u.facts = {
      ...f,
      lastSeen: Math.max(f.lastSeen, e.timeMs),
      counters,
      streaks,
      traits,
      ...(r.chance(0.05) ? { stage: r.pick(STAGES), stageSince: e.timeMs } : {}),
    };
    run(u, { now, before, after: u.facts, event: e }, () => `step ${i}: ${JSON.stringify(e)} at ${now}`);
  }
  return tally;
}

/** What the comparison is about was reached: each role acted at least once. */
function expectReached(t: Tally, cancellations: string[]): void {
  expect(t.touches).toBeGreaterThan(50);
  expect(t.conversions).toBeGreaterThan(0);
  expect(t.lateFollowUps).toBeGreaterThan(0);
  expect(t.consentChanges).toBeGreaterThan(0);
  expect([...t.cancellations]).toEqual(expect.arrayContaining(cancellations));
  expect([...t.scheduled]).toEqual(expect.arrayContaining(['absence', 'inactive', 'step']));
  expect([...t.skipped]).toEqual(expect.arrayContaining(['stale_event', 'stale_timer', 'already_in_journey']));
  expect(t.pruned).toBeGreaterThan(t.steps / 4);
}

describe('the event index decides what the full plan decides', () => {
  it('with the shipped playbook, on random events and timer ticks', () => {
    const t = lockstep(playbook(), 11, 4000);
    // No playbook journey with an exit waits for an absence.
    expectReached(t, ['exit:touch', 'exit:step_wait', 'followed_by:absence_wait']);
  });

  it('with generated journeys: filters with names, lists, no names, channels, props, values', () => {
    for (const seed of [1, 2, 3]) {
      const stateSpec = compileYaml(`generated-${seed}`, generatedConfig(seed, 30));
      const spec = stateSpec.rules!;
      // The generated spec has what this test is about.
      const filters = filtersOf(spec);
      expect(filters.some((f) => f.names.length === 0)).toBe(true);
      expect(filters.some((f) => f.names.length > 1)).toBe(true);
      expect(spec.journeys.some((j) => j.trigger.type === 'inactive' && j.trigger.match === null)).toBe(true);
      expect(spec.journeys.some((j) => j.trigger.type === 'inactive' && j.trigger.match !== null)).toBe(true);
      expect(spec.journeys.some((j) => j.trigger.type === 'notFollowedBy' && j.trigger.then.names.length === 0)).toBe(true);
      expect(spec.journeys.some((j) => j.exitOn.some((f) => f.names.length === 0))).toBe(true);
      expect(spec.journeys.some((j) => j.conversion !== null && j.conversion.match.names.length === 0)).toBe(true);
      expect(spec.policy.consent.events.some((r) => r.match.names.length === 0)).toBe(true);
      const t = lockstep(stateSpec, 100 + seed, 1500);
      expectReached(t, ['exit:touch', 'exit:step_wait', 'exit:absence_wait', 'followed_by:absence_wait']);
    }
  });

  it('with the shipped playbook, on live banking traffic through the state step', () => {
    const stateSpec = playbook();
    const fullSpec: StateSpec = { ...stateSpec, rules: specWithFullPlanForTests(stateSpec.rules!) };
    const gen = new TrafficGenerator({ seed: 41, users: 200, ratePerSec: 300 / 60, startMs: T0, reportingTimeZone: ZONE });
    const sides = [
      { spec: stateSpec, states: new Map<string, UserState>(), stream: 0 },
      { spec: fullSpec, states: new Map<string, UserState>(), stream: 0 },
    ];
    const timers = new Map<string, number>();
    let touches = 0;
    for (let b = 0; b < 16; b++) {
      // A batch is a minute of traffic, decided at its end; then the users' due timers fire.
      const now = T0 + (b + 1) * MIN;
      const batch: AppEvent[] = [];
      for (let i = 0; i < 300; i++) {
        const e = gen.next().event;
        batch.push({ ...e, props: Object.setPrototypeOf({ ...e.props }, null) as Record<string, string> });
      }
      const due = [...timers].filter(([, at]) => at <= now).map(([u]) => u);
      const [a, c] = sides.map((s) => {
        const loaded = new Map(batch.map((e) => [e.userId, s.states.get(e.userId)]));
        const events = applyEvents(batch, loaded, s.stream, now, s.spec);
        s.stream = events.streamTime;
        for (const [u, st] of events.states) s.states.set(u, st);
        const fired = applyTimers(due, new Map(due.map((u) => [u, s.states.get(u)])), now, s.spec);
        for (const [u, st] of fired.states) s.states.set(u, st);
        return [written(events), written(fired)] as const;
      }) as [readonly [Written, Written], readonly [Written, Written]];
      expect(c, `batch ${b}`).toEqual(a);
      touches += a[0].outbox.length + a[1].outbox.length;
      for (const w of [a[0], a[1]]) for (const [u, at] of w.timers) at === null ? timers.delete(u) : timers.set(u, at);
    }
    expect(touches).toBeGreaterThan(10);
  });
});

interface Written {
  states: unknown;
  counters: unknown;
  outbox: Array<[string, string]>;
  timers: Array<[string, number | null]>;
  transitions: unknown;
  stats: unknown;
}

/** What a batch's commit would write, as plain data. */
function written(r: StepResult): Written {
  return {
    states: Object.fromEntries([...r.states].map(([u, s]) => [u, JSON.parse(encodeUserState(s)) as unknown])),
    counters: [...r.counters].map(([h, f]) => [h, [...f].sort()]).sort(),
    outbox: r.outbox.map((o) => [o.field, o.value]),
    timers: [...r.timers].sort(),
    transitions: r.transitions,
    stats: r.stats,
  };
}
