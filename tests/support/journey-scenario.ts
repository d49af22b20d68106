import { createHmac, timingSafeEqual } from 'node:crypto';
import { refAssignment, type RefRules } from './journey-reference.js';

/**
 * The seeded scenario of the journeys reference test (tests/integration/journeys-reference.test.ts):
 * the config twice — as the YAML the engine loads and as the plain rules the reference model
 * reads (written by hand, side by side, so a mismatch is visible) — and a few hundred users whose
 * events exercise every trigger and every policy check. No import from src/.
 *
 * Times: events carry the real wall clock (the BullMQ delays and the timer sweep run on it). An
 * event is stamped either relative to the start of the scenario (`rel`, set before it is
 * produced, sometimes a few seconds ahead — well inside `maxFutureSkew` — so that touches land at
 * chosen spacings) or with the clock at the moment it is produced (`rel` undefined).
 */

export const SECOND = 1_000;
export const PARTITIONS = 4;

/** Quiet hours chosen around the current hour: users in UTC+12 are inside them, users in UTC far outside. */
export interface QuietWindow {
  fromHour: number;
  toHour: number;
}

export function quietWindowFor(nowMs: number): QuietWindow {
  const h = new Date(nowMs).getUTCHours();
  // UTC+12 local hour is h+12: inside [h+11, h+14) with at least an hour to either edge; a UTC
  // user's local hour h is ten hours or more away from it.
  return { fromHour: (h + 11) % 24, toHour: (h + 14) % 24 };
}

export const QUIET_ZONE = 'Etc/GMT-12'; // UTC+12, no daylight saving
const hh = (h: number) => `${String(h).padStart(2, '0')}:00`;

export interface YamlParams {
  brokers: string;
  topic: string;
  groupId: string;
  redisUrl: string;
  namespace: string;
  queue: string;
  receiverUrl: string;
  secret: string;
  quiet: QuietWindow;
}

export function scenarioYaml(p: YamlParams): string {
  const hook = (path: string) => `{ adapter: webhook, url: "${p.receiverUrl}/${path}", secret: "${p.secret}", allowPrivateAddresses: true, timeout: 5s, concurrency: 8 }`;
  return `
kafka: { brokers: [${p.brokers}], topic: ${p.topic}, dlqTopic: ${p.topic}.dlq, groupId: ${p.groupId} }
redis: { url: ${p.redisUrl}, keyPrefix: ${p.namespace} }
http: { port: 0 }
time: { reportingTimeZone: UTC, maxTriggerAge: 1h }
lifecycle: { sweepInterval: 50ms }
behaviour:
  counters:
    - { name: fund_views, match: { name: page_view, props: { page: fund_detail } }, keep: 3, within: 1h }
policy:
  consent:
    default: granted
    channels: { sms: denied }
    events:
      - { match: { name: push_opt_out }, channel: push, grant: false }
      - { match: { name: consent_changed }, channelProp: channel, grantProp: granted }
  quietHours: { from: "${hh(p.quiet.fromHour)}", to: "${hh(p.quiet.toHour)}", action: defer, channels: [push] }
  caps:
    - { name: push_1m, channel: push, max: 1, within: 1m }
    - { name: all_1h, max: 2, within: 1h }
  minGap: 2s
  globalHoldout: 5%
  holdoutSalt: reference-salt
touches:
  queue: ${p.queue}
  attempts: 3
  backoff: 200ms
  channels:
    push: ${hook('push')}
    email: ${hook('email')}
    sms: ${hook('sms')}
journeys:
  - id: big-deposit
    priority: 20
    trigger: { type: event, match: { name: deposit, props: { product: { in: [fund, bond] }, amount: { gte: 1000 } } } }
    exitOn: [{ name: deposit_cancelled }]
    reEntry: never
    channel: push
    template: deposit_offer
    steps: [{ id: offer, delay: 5s }]
    variants: [{ id: A, weight: 1 }, { id: B, weight: 3, template: deposit_offer_b }]
    holdout: 20%
    conversion: { match: { name: fund_purchase }, within: 1h }
  - id: deposit-thanks
    priority: 5
    trigger: { type: event, match: { name: deposit } }
    reEntry: { cooldown: 1h }
    channel: push
    template: thanks
    steps: [{ id: main, delay: 5s }]
  - id: fund-interest
    priority: 10
    trigger: { type: count, counter: fund_views, atLeast: 3, within: 1h }
    reEntry: { cooldown: 1h }
    channel: [push, email]
    template: fund_offer
    steps: [{ id: offer, delay: 5s }]
  - id: promo
    priority: 0
    trigger: { type: event, match: { name: promo_click, props: { campaign: spring } } }
    reEntry: never
    channel: [email, push]
    template: spring_promo
    steps: [{ id: main, delay: 5s }]
  - id: transfer-abandoned
    priority: 50
    trigger: { type: notFollowedBy, first: { name: transfer_start }, then: { name: transfer_done }, within: 3s, by: flow_id }
    reEntry: { cooldown: 1h }
    channel: sms
    template: transfer_reminder
    useGlobalHoldout: false
  - id: onboarding
    priority: 1
    trigger: { type: firstTime, match: { name: signup } }
    exitOn: [{ name: onboarding_done }]
    channel: email
    template: onboarding_welcome
    steps:
      - { id: welcome, delay: 4s }
      - { id: tips, delay: 3s, template: onboarding_tips }
    useGlobalHoldout: false
    ignoreCaps: true
  - id: statement
    priority: 2
    trigger: { type: event, match: { name: statement_ready } }
    reEntry: never
    channel: push
    template: statement
    steps: [{ id: main, delay: 5s }]
  - id: flash-sale
    priority: 3
    trigger: { type: event, match: { name: flash_sale } }
    reEntry: never
    channel: push
    template: flash_sale
    quietHours: drop
    steps: [{ id: main, delay: 5s }]
  - id: bill-reminder
    priority: 4
    trigger: { type: event, match: { name: bill_due } }
    reEntry: never
    channel: push
    template: bill_reminder
    steps: [{ id: main, delay: 60s }]
`;
}

/** The same rules as the YAML above, as the reference model reads them. */
export function scenarioRules(quiet: QuietWindow): RefRules {
  const none = { exitOn: [], variants: [], holdout: 0, useGlobalHoldout: true, ignoreCaps: false, conversion: null };
  return {
    reportingTimeZone: 'UTC',
    maxTriggerAgeMs: 3_600_000,
    policy: {
      consentDefault: true,
      consentByChannel: { sms: false },
      consentEvents: [
        { match: { names: ['push_opt_out'] }, channel: 'push', grant: false },
        { match: { names: ['consent_changed'] }, channelProp: 'channel', grantProp: 'granted' },
      ],
      quietHours: { fromMinute: quiet.fromHour * 60, toMinute: quiet.toHour * 60, action: 'defer', channels: ['push'] },
      caps: [
        { name: 'push_1m', channel: 'push', max: 1, withinMs: 60 * SECOND },
        { name: 'all_1h', channel: null, max: 2, withinMs: 3_600_000 },
      ],
      minGapMs: 2 * SECOND,
      globalHoldout: 0.05,
      holdoutSalt: 'reference-salt',
    },
    journeys: [
      {
        ...none,
        id: 'big-deposit',
        priority: 20,
        trigger: { type: 'event', match: { names: ['deposit'], props: { product: { in: ['fund', 'bond'] }, amount: { range: { gte: 1000 } } } } },
        exitOn: [{ names: ['deposit_cancelled'] }],
        reEntry: { kind: 'never' },
        channels: ['push'],
        template: 'deposit_offer',
        steps: [{ id: 'offer', delayMs: 5 * SECOND }],
        variants: [
          { id: 'A', weight: 1 },
          { id: 'B', weight: 3, template: 'deposit_offer_b' },
        ],
        holdout: 0.2,
        conversion: { match: { names: ['fund_purchase'] }, withinMs: 3_600_000 },
      },
      {
        ...none,
        id: 'deposit-thanks',
        priority: 5,
        trigger: { type: 'event', match: { names: ['deposit'] } },
        reEntry: { kind: 'cooldown', ms: 3_600_000 },
        channels: ['push'],
        template: 'thanks',
        steps: [{ id: 'main', delayMs: 5 * SECOND }],
      },
      {
        ...none,
        id: 'fund-interest',
        priority: 10,
        trigger: { type: 'count', match: { names: ['page_view'], props: { page: { equals: 'fund_detail' } } }, atLeast: 3, withinMs: 3_600_000 },
        reEntry: { kind: 'cooldown', ms: 3_600_000 },
        channels: ['push', 'email'],
        template: 'fund_offer',
        steps: [{ id: 'offer', delayMs: 5 * SECOND }],
      },
      {
        ...none,
        id: 'promo',
        priority: 0,
        trigger: { type: 'event', match: { names: ['promo_click'], props: { campaign: { equals: 'spring' } } } },
        reEntry: { kind: 'never' },
        channels: ['email', 'push'],
        template: 'spring_promo',
        steps: [{ id: 'main', delayMs: 5 * SECOND }],
      },
      {
        ...none,
        id: 'transfer-abandoned',
        priority: 50,
        trigger: { type: 'notFollowedBy', first: { names: ['transfer_start'] }, then: { names: ['transfer_done'] }, withinMs: 3 * SECOND, by: 'flow_id' },
        reEntry: { kind: 'cooldown', ms: 3_600_000 },
        channels: ['sms'],
        template: 'transfer_reminder',
        steps: [{ id: 'main', delayMs: 0 }],
        useGlobalHoldout: false,
      },
      {
        ...none,
        id: 'onboarding',
        priority: 1,
        trigger: { type: 'firstTime', match: { names: ['signup'] } },
        exitOn: [{ names: ['onboarding_done'] }],
        reEntry: { kind: 'never' },
        channels: ['email'],
        template: 'onboarding_welcome',
        steps: [
          { id: 'welcome', delayMs: 4 * SECOND },
          { id: 'tips', delayMs: 3 * SECOND, template: 'onboarding_tips' },
        ],
        useGlobalHoldout: false,
        ignoreCaps: true,
      },
      {
        ...none,
        id: 'statement',
        priority: 2,
        trigger: { type: 'event', match: { names: ['statement_ready'] } },
        reEntry: { kind: 'never' },
        channels: ['push'],
        template: 'statement',
        steps: [{ id: 'main', delayMs: 5 * SECOND }],
      },
      {
        ...none,
        id: 'flash-sale',
        priority: 3,
        trigger: { type: 'event', match: { names: ['flash_sale'] } },
        reEntry: { kind: 'never' },
        channels: ['push'],
        template: 'flash_sale',
        quietHours: 'drop',
        steps: [{ id: 'main', delayMs: 5 * SECOND }],
      },
      {
        ...none,
        id: 'bill-reminder',
        priority: 4,
        trigger: { type: 'event', match: { names: ['bill_due'] } },
        reEntry: { kind: 'never' },
        channels: ['push'],
        template: 'bill_reminder',
        steps: [{ id: 'main', delayMs: 60 * SECOND }],
      },
    ],
  };
}

// ---- users and their events ----

/**
 * When an event is produced: p1 at the start; p2 once p1 is applied; `late` once the transfer
 * reminders it follows up have fired; `mid` once the onboarding welcomes it follows have been
 * delivered; p3 once every touch of p1/p2 due so far has been delivered.
 */
export type Phase = 'p1' | 'p2' | 'late' | 'mid' | 'p3';
export const PHASES: readonly Phase[] = ['p1', 'p2', 'late', 'mid', 'p3'];

export interface PlannedEvent {
  userId: string;
  name: string;
  props: Record<string, string>;
  tz: string;
  phase: Phase;
  /** ms after the scenario's start; undefined = the clock when produced. */
  rel?: number;
  /** For `late`: the absence wait this follows up is due at (start of that flow) + 3 s. */
  followsFlowStartedAtRel?: number;
}

export type Kind = 'dep' | 'mix' | 'fund' | 'transfer' | 'onb' | 'quiet' | 'race';

export interface ScenarioUser {
  id: string;
  kind: Kind;
  events: PlannedEvent[];
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Builds the users; `rules` picks the race users (who must be treated, not held out, in big-deposit). */
export function buildScenario(seed: number, rules: RefRules): ScenarioUser[] {
  const rnd = mulberry32(seed);
  const chance = (p: number) => rnd() < p;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const grid = (from: number, to: number, step = 500) => from + step * Math.floor(rnd() * (Math.floor((to - from) / step) + 1));
  const users: ScenarioUser[] = [];
  const user = (kind: Kind, i: number): ScenarioUser => {
    const u: ScenarioUser = { id: `${kind}-${String(i).padStart(3, '0')}`, kind, events: [] };
    users.push(u);
    return u;
  };
  const ev = (u: ScenarioUser, phase: Phase, name: string, props: Record<string, string> = {}, rel?: number, tz = 'UTC') =>
    u.events.push({ userId: u.id, name, props, tz, phase, ...(rel !== undefined ? { rel } : {}) });

  // Deposits: the prop filter (product in [fund, bond], amount >= 1000), A/B and the holdout,
  // priority against deposit-thanks, opt-outs before and after the decision, exits,
  // conversions, re-deposits while the touch is pending and after (already_in_journey, never).
  for (let i = 0; i < 90; i++) {
    const u = user('dep', i);
    const optedOutBefore = chance(0.1);
    if (optedOutBefore) ev(u, 'p1', 'push_opt_out', {}, 0);
    ev(u, 'p1', 'deposit', { product: pick(['fund', 'fund', 'bond', 'cash']), amount: pick(['2500', '2500', '1000', '999', 'n/a']) }, grid(500, 2000));
    if (chance(0.2)) ev(u, 'p2', 'deposit_cancelled');
    else if (!optedOutBefore && chance(0.12)) ev(u, 'p2', 'push_opt_out');
    if (chance(0.3)) ev(u, 'p2', 'fund_purchase', { product: 'fund' });
    if (chance(0.15)) ev(u, 'p2', 'deposit', { product: 'bond', amount: '5000' });
    if (chance(0.3)) ev(u, 'p3', 'deposit', { product: 'fund', amount: '3000' });
    if (chance(0.1)) ev(u, 'p3', 'fund_purchase', { product: 'fund' });
  }

  // Several journeys close together: caps (rolling, per channel and across channels), the
  // minimum gap, channel preference lists, and the 60 s bill reminder that a 1-minute rolling
  // window does or does not hold.
  for (let i = 0; i < 80; i++) {
    const u = user('mix', i);
    const p1: Array<{ rel: number; add: () => void }> = [];
    if (chance(0.15)) ev(u, 'p1', 'consent_changed', { channel: 'email', granted: pick(['false', 'no']) }, 0);
    if (chance(0.08)) ev(u, 'p1', 'push_opt_out', {}, 0);
    if (chance(0.6)) {
      const rel = grid(500, 8000);
      p1.push({ rel, add: () => ev(u, 'p1', 'deposit', { product: 'fund', amount: '2500' }, rel) });
    }
    if (chance(0.5)) {
      const rel = grid(1500, 8000);
      p1.push({
        rel,
        add: () => {
          ev(u, 'p1', 'page_view', { page: 'fund_detail' }, rel - 1000);
          ev(u, 'p1', 'page_view', { page: 'fund_detail' }, rel - 500);
          ev(u, 'p1', 'page_view', { page: 'fund_detail' }, rel);
        },
      });
    }
    if (chance(0.5)) {
      const rel = grid(500, 8000);
      const campaign = chance(0.85) ? 'spring' : 'autumn';
      p1.push({ rel, add: () => ev(u, 'p1', 'promo_click', { campaign }, rel) });
    }
    if (chance(0.3)) {
      const rel = grid(500, 8000);
      p1.push({ rel, add: () => ev(u, 'p1', 'statement_ready', {}, rel) });
    }
    if (chance(0.35)) {
      const rel = grid(500, 8000);
      p1.push({ rel, add: () => ev(u, 'p1', 'bill_due', {}, rel) });
    }
    p1.sort((a, b) => a.rel - b.rel);
    for (const x of p1) x.add();
  }

  // The N-within-W trigger: 2, 3 or 4 views, other pages in between, the third in p2 for some.
  for (let i = 0; i < 30; i++) {
    const u = user('fund', i);
    const n = pick([2, 3, 3, 4]);
    let rel = grid(0, 1000);
    for (let k = 0; k < n; k++) {
      if (chance(0.3)) ev(u, 'p1', 'page_view', { page: 'loan_detail' }, rel);
      rel += 250;
      if (k === 2 && chance(0.3)) ev(u, 'p2', 'page_view', { page: 'fund_detail' });
      else ev(u, 'p1', 'page_view', { page: 'fund_detail' }, rel);
      rel += 250;
    }
  }

  // Not followed by, paired on flow_id, fired by the timer sweep; sms is opt-in (default denied).
  for (let i = 0; i < 60; i++) {
    const u = user('transfer', i);
    const r = pick(['true', 'true', 'true', 'yes', 'false', 'none']);
    if (r !== 'none') ev(u, 'p1', 'consent_changed', { channel: 'sms', granted: r }, 0);
    const start = grid(200, 800, 100);
    const f1 = `f-${u.id}-1`;
    const f2 = `f-${u.id}-2`;
    const late = (rel: number, flow: string) => {
      if (chance(0.6)) u.events.push({ userId: u.id, name: 'transfer_done', props: { flow_id: flow }, tz: 'UTC', phase: 'late', followsFlowStartedAtRel: rel });
    };
    switch (pick(['abandoned', 'abandoned', 'abandoned', 'done', 'done', 'other-flow', 'no-flow-done', 'restart', 'two-flows', 'no-flow-start'])) {
      case 'abandoned':
        ev(u, 'p1', 'transfer_start', { flow_id: f1 }, start);
        late(start, f1);
        break;
      case 'done':
        ev(u, 'p1', 'transfer_start', { flow_id: f1 }, start);
        ev(u, 'p1', 'transfer_done', { flow_id: f1 }, start + 500);
        break;
      case 'other-flow':
        ev(u, 'p1', 'transfer_start', { flow_id: f1 }, start);
        ev(u, 'p1', 'transfer_done', { flow_id: f2 }, start + 500);
        late(start, f1);
        break;
      case 'no-flow-done':
        ev(u, 'p1', 'transfer_start', { flow_id: f1 }, start);
        ev(u, 'p1', 'transfer_done', {}, start + 500);
        late(start, f1);
        break;
      case 'restart':
        ev(u, 'p1', 'transfer_start', { flow_id: f1 }, start);
        ev(u, 'p1', 'transfer_start', { flow_id: f1 }, start + 500);
        late(start, f1);
        break;
      case 'two-flows':
        ev(u, 'p1', 'transfer_start', { flow_id: f1 }, start);
        ev(u, 'p1', 'transfer_start', { flow_id: f2 }, start + 1000);
        late(start, f1);
        break;
      case 'no-flow-start':
        ev(u, 'p1', 'transfer_start', {}, start);
        break;
    }
  }

  // First time ever, two steps, exits before the first step and between the steps.
  for (let i = 0; i < 40; i++) {
    const u = user('onb', i);
    const rel = grid(0, 1000);
    ev(u, 'p1', 'signup', {}, rel);
    if (chance(0.2)) ev(u, 'p1', 'signup', {}, rel + 500);
    const x = rnd();
    if (x < 0.15) ev(u, 'p2', 'onboarding_done');
    else if (x < 0.35) ev(u, 'mid', 'onboarding_done');
    else if (x < 0.45) ev(u, 'p2', 'consent_changed', { channel: 'email', granted: 'false' });
  }

  // Quiet hours in the user's zone: deferred (statement) or dropped (flash-sale) in UTC+12.
  for (let i = 0; i < 30; i++) {
    const u = user('quiet', i);
    const tz = chance(0.6) ? QUIET_ZONE : 'UTC';
    const a = chance(0.7);
    const b = !a || chance(0.6);
    if (a) ev(u, 'p1', 'statement_ready', {}, grid(0, 1000), tz);
    if (b) ev(u, 'p1', 'flash_sale', {}, grid(1500, 3000), tz);
  }

  // Exits whose event time is before the moment the touch was decided, though after the entry:
  // the same batch as the trigger, and a later batch carrying an earlier device time.
  const treated = (id: string) => refAssignment(rules, rules.journeys.find((j) => j.id === 'big-deposit')!, id).group === 'variant';
  let n = 0;
  const raceUser = () => {
    for (;;) {
      const id = `race-${String(n++).padStart(3, '0')}`;
      if (!treated(id)) continue;
      const u: ScenarioUser = { id, kind: 'race', events: [] };
      users.push(u);
      return u;
    }
  };
  for (let i = 0; i < 3; i++) {
    const u = raceUser();
    ev(u, 'p1', 'deposit', { product: 'fund', amount: '2500' }, -2000);
    ev(u, 'p1', 'deposit_cancelled', {}, -1000);
  }
  for (let i = 0; i < 3; i++) {
    const u = raceUser();
    ev(u, 'p1', 'signup', {}, -2000);
    ev(u, 'p1', 'onboarding_done', {}, -1000);
  }
  for (let i = 0; i < 3; i++) {
    const u = raceUser();
    ev(u, 'p1', 'deposit', { product: 'fund', amount: '2500' }, -1000);
    ev(u, 'p2', 'deposit_cancelled', {}, -500);
  }
  return users;
}

/** The partition of a user: any fixed function keeps each user's events in one ordered lane. */
export function partitionOf(userId: string): number {
  let h = 0;
  for (let i = 0; i < userId.length; i++) h = (h * 31 + userId.charCodeAt(i)) >>> 0;
  return h % PARTITIONS;
}

/**
 * Standard Webhooks verification written from the spec (HMAC-SHA256, base64, over
 * `${webhook-id}.${webhook-timestamp}.${body}`, key = base64 part of `whsec_…`), independent
 * of the receiver's own check.
 */
export function verifyStandardWebhook(secret: string, headers: Record<string, string | string[] | undefined>, body: string, nowMs: number): string | null {
  const id = headers['webhook-id'];
  const ts = headers['webhook-timestamp'];
  const sigs = headers['webhook-signature'];
  if (typeof id !== 'string' || typeof ts !== 'string' || typeof sigs !== 'string') return 'missing headers';
  if (!/^\d+$/.test(ts) || Math.abs(nowMs / 1000 - Number(ts)) > 300) return `timestamp ${ts} not within 5 minutes`;
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest();
  for (const s of sigs.split(' ')) {
    const [version, b64] = s.split(',');
    if (version !== 'v1' || b64 === undefined) continue;
    const got = Buffer.from(b64, 'base64');
    if (got.length === expected.length && timingSafeEqual(got, expected)) return null;
  }
  return 'no matching v1 signature';
}
