import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { laneKeys } from '../../src/state/keys.js';
import type { StateQueries } from '../../src/state/queries.js';
import { refAssignment, refTouchId, type RefJourney, type RefRules } from './journey-reference.js';
import type { LogMessage } from './reference-log.js';
import type { RefResult } from './reference-model.js';
import { DAY, SIGNUPS_NAME, STATE_REF_SPEC, ZONE, stateYaml } from './state-config.js';
import { expect } from 'vitest';
import { dropKeys, waitForLanes } from './engine-harness.js';
import { until } from './poll.js';
import { verifyStandardWebhook } from './journey-scenario.js';
import { countMismatches, referenceStageCounts, userMismatches } from './reference-compare.js';
import type { ReceivedRequest } from './webhook-receiver.js';

/**
 * What the chaos tests of issue 6 (tests/chaos/engine-crash.test.ts, graceful-rebalance.test.ts)
 * share: a config with the banking playbook's event-triggered journeys on a seeded reference log
 * (tests/support/reference-log.ts), an independent reference of the touches that log must
 * produce, and the checks of state and deliveries after the chaos.
 *
 * Why only event triggers, each on its own event name, no caps: the engine runs on a fixed wall
 * clock (NUDGE_TEST_CLOCK_MS) past a 40-day log, so every decision happens at the same `now`
 * whatever the crashes did to the timing, and the expected touches are a pure function of the
 * log. Time-based triggers and rolling caps would make the outcome depend on when the sweep
 * ran between kills; tests/integration/journeys-reference.test.ts covers those in real time.
 * The playbook's salary step at the user's usual active hour is an immediate step here for the
 * same reason.
 */

export { DAY, STATE_REF_SPEC, ZONE, until };

/** The journeys, as the reference reads them (the YAML below says the same in config terms). */
interface ChaosJourney {
  id: string;
  /** The event name that triggers it, and an optional test on it. */
  name: string;
  test?: (e: { props: Record<string, string>; value: number }) => boolean;
  reEntry: { kind: 'never' } | { kind: 'cooldown'; ms: number };
  template: string;
  holdout: number;
  variants: Array<{ id: string; weight: number; template?: string }>;
}

export const CHAOS_JOURNEYS: ChaosJourney[] = [
  { id: 'welcome', name: 'register', reEntry: { kind: 'never' }, template: 'welcome', holdout: 0, variants: [] },
  { id: 'salary-autoinvest', name: 'salary_credited', test: (e) => e.value >= 1000, reEntry: { kind: 'cooldown', ms: 20 * DAY }, template: 'autoinvest_offer', holdout: 0.1, variants: [] },
  {
    id: 'fund-thanks',
    name: 'fund_purchase',
    test: (e) => e.props.product === 'money_market',
    reEntry: { kind: 'cooldown', ms: 7 * DAY },
    template: 'fund_thanks',
    holdout: 0,
    variants: [{ id: 'A', weight: 1 }, { id: 'B', weight: 1, template: 'fund_thanks_b' }],
  },
  { id: 'transfer-receipt', name: 'transfer_done', reEntry: { kind: 'cooldown', ms: 3 * DAY }, template: 'transfer_receipt', holdout: 0, variants: [] },
];

export interface ChaosYaml {
  brokers: string;
  topic: string;
  groupId: string;
  redisUrl: string;
  namespace: string;
  queue: string;
  /** The webhook receiver's base URL; deliveries go to `${receiverUrl}/push`. */
  receiverUrl: string;
  secret: string;
}

// session.timeout.ms at the broker's minimum (6 s): a SIGKILLed member never leaves the group,
// and its partitions go to the restarted one only when its session expires (45 s by default).
// maxTriggerAge 60d: the fixed clock is two days past a 40-day log and every event may trigger.
export function chaosYaml(p: ChaosYaml): string {
  return `
kafka:
  brokers: [${p.brokers}]
  topic: ${p.topic}
  dlqTopic: ${p.topic}.dlq
  groupId: ${p.groupId}
  librdkafka:
    session.timeout.ms: 6000
    heartbeat.interval.ms: 500
redis:
  url: ${p.redisUrl}
  keyPrefix: ${p.namespace}
http:
  port: 0
${stateYaml({ maxTriggerAge: '60d', deviceSignups: true }).trimStart()}policy:
  consent: { default: granted }
  holdoutSalt: chaos
touches:
  queue: ${p.queue}
  attempts: 5
  backoff: 200ms
  channels:
    push: { adapter: webhook, url: "${p.receiverUrl}/push", secret: "${p.secret}", allowPrivateAddresses: true, timeout: 5s, concurrency: 8 }
journeys:
  - id: welcome
    priority: 60
    trigger: { type: event, match: { name: register } }
    reEntry: never
    channel: push
    template: welcome
  - id: salary-autoinvest
    priority: 40
    trigger: { type: event, match: { name: salary_credited, value: { gte: 1000 } } }
    reEntry: { cooldown: 20d }
    channel: push
    template: autoinvest_offer
    holdout: 10%
    conversion: { match: { name: fund_purchase }, within: 3d }
  - id: fund-thanks
    priority: 15
    trigger: { type: event, match: { name: fund_purchase, props: { product: { in: [money_market] } } } }
    reEntry: { cooldown: 7d }
    channel: push
    template: fund_thanks
    variants: [{ id: A, weight: 1 }, { id: B, weight: 1, template: fund_thanks_b }]
  - id: transfer-receipt
    priority: 10
    trigger: { type: event, match: { name: transfer_done } }
    reEntry: { cooldown: 3d }
    channel: push
    template: transfer_receipt
`;
}

export interface ExpectedTouch {
  touchId: string;
  userId: string;
  journeyId: string;
  stepId: string;
  channel: string;
  template: string;
  variant: string;
  triggerEventId: string;
  sendAt: number;
}

/**
 * The touches the log must produce, from the plain rules (DESIGN §4): per partition, in offset
 * order, an event is dropped when invalid, when its id is among the user's last 32 applied ids
 * (a duplicate), or when it is more than the allowed lateness behind its partition's stream
 * time; one from beyond the skew bound counts at the wall clock. A matching applied event enters
 * its journey unless the user entered before and re-entry says no (never; or less than the
 * cooldown between the two entries' event times). Users in the holdout enter and get no touch.
 * One immediate step, sent at the decision's wall clock (`now`, fixed) or later.
 * Group and variant come from the journeys reference's own hash (tests/support/journey-reference.ts).
 */
export function expectedTouches(log: readonly LogMessage[], now: number): { touches: ExpectedTouch[]; entries: number; heldOut: number } {
  const rules: RefRules = {
    reportingTimeZone: ZONE,
    maxTriggerAgeMs: 60 * DAY,
    policy: { consentDefault: true, consentByChannel: {}, consentEvents: [], quietHours: null, caps: [], minGapMs: null, globalHoldout: 0, holdoutSalt: 'chaos' },
    journeys: [],
  };
  const refJourney = (j: ChaosJourney): RefJourney => ({
    id: j.id,
    priority: 0,
    trigger: { type: 'event', match: { names: [j.name] } },
    exitOn: [],
    reEntry: j.reEntry,
    channels: ['push'],
    template: j.template,
    steps: [{ id: 'main', delayMs: 0 }],
    variants: j.variants,
    holdout: j.holdout,
    useGlobalHoldout: true,
    ignoreCaps: false,
    conversion: null,
  });
  const streamTime = new Map<number, number>();
  const recent = new Map<string, string[]>();
  const lastEntry = new Map<string, number>(); // `${journey} ${user}` -> event time of the entry
  const touches: ExpectedTouch[] = [];
  let entries = 0;
  let heldOut = 0;
  for (const m of log) {
    const e = m.ref.event;
    if (e === null) continue;
    const ids = recent.get(e.userId) ?? [];
    if (ids.includes(e.eventId)) continue;
    const st = streamTime.get(m.partition) ?? 0;
    if (e.timeMs < st - STATE_REF_SPEC.allowedLatenessMs) continue;
    let t = e.timeMs;
    if (t > now + STATE_REF_SPEC.maxFutureSkewMs) t = now;
    else streamTime.set(m.partition, Math.max(st, t));
    ids.push(e.eventId);
    if (ids.length > STATE_REF_SPEC.recentIds) ids.shift();
    recent.set(e.userId, ids);
    for (const j of CHAOS_JOURNEYS) {
      if (e.name !== j.name || (j.test !== undefined && !j.test(e))) continue;
      const key = `${j.id} ${e.userId}`;
      const prior = lastEntry.get(key);
      if (prior !== undefined && (j.reEntry.kind === 'never' || t - prior < j.reEntry.ms)) continue;
      lastEntry.set(key, t);
      entries++;
      const { group, variant } = refAssignment(rules, refJourney(j), e.userId);
      if (group !== 'variant') {
        heldOut++;
        continue;
      }
      const template = j.variants.find((v) => v.id === variant)?.template ?? j.template;
      touches.push({ touchId: refTouchId(j.id, 'main', e.userId, e.eventId), userId: e.userId, journeyId: j.id, stepId: 'main', channel: 'push', template, variant, triggerEventId: e.eventId, sendAt: Math.max(t, now) });
    }
  }
  return { touches, entries, heldOut };
}

export interface DeliveryReport {
  /** Problems found, one line each (missing, unexpected, wrong data, bad signature). */
  problems: string[];
  /** Distinct touch ids delivered. */
  distinct: number;
  /** Requests that repeated a touch id already received (same `webhook-id`: the receiver drops them). */
  repeats: number;
}

/** Every request the receiver got against the expected touches: each once, signed, with the reference's data. */
export function checkDeliveries(requests: readonly ReceivedRequest[], expected: readonly ExpectedTouch[], secret: string): DeliveryReport {
  const problems: string[] = [];
  const want = new Map(expected.map((t) => [t.touchId, t]));
  const byId = new Map<string, ReceivedRequest[]>();
  for (const r of requests) byId.set(r.id, [...(byId.get(r.id) ?? []), r]);
  for (const t of expected) if (!byId.has(t.touchId)) problems.push(`missing: ${t.journeyId} for ${t.userId} (trigger ${t.triggerEventId}, ${t.touchId})`);
  let repeats = 0;
  for (const [id, reqs] of byId) {
    repeats += reqs.length - 1;
    const t = want.get(id);
    const first = reqs[0] as ReceivedRequest;
    if (t === undefined) {
      problems.push(`unexpected delivery ${id}: ${first.body.slice(0, 300)}`);
      continue;
    }
    for (const r of reqs) {
      const data = (JSON.parse(r.body) as { data: Record<string, unknown> }).data;
      // The webhook carries the touch without its trigger event id (checkJobs compares that).
      const got = { touchId: data.touchId, userId: data.userId, journeyId: data.journeyId, stepId: data.stepId, channel: data.channel, template: data.template, variant: data.variant, sendAt: data.sendAt };
      const ref = { touchId: t.touchId, userId: t.userId, journeyId: t.journeyId, stepId: t.stepId, channel: t.channel, template: t.template, variant: t.variant, sendAt: t.sendAt };
      if (JSON.stringify(got) !== JSON.stringify(ref)) problems.push(`${id}: delivered ${JSON.stringify(got)}, reference ${JSON.stringify(ref)}`);
      if (r.path !== '/hooks/push') problems.push(`${id}: delivered to ${r.path}`);
      if (!r.verified.ok) problems.push(`${id}: the receiver's signature check failed (${r.verified.reason})`);
      const own = verifyStandardWebhook(secret, r.headers, r.body, r.at);
      if (own !== null) problems.push(`${id}: signature: ${own}`);
    }
  }
  return { problems, distinct: byId.size, repeats };
}

/**
 * The BullMQ jobs against the expected touches: one job per touch (job id = touch id), named
 * after the channel, with the reference's data (trigger event id included), completed with one
 * of `outcomes`; no job the reference does not know (holdout users get none). `duplicate` is
 * a job re-run after a crash whose send the ledger had already recorded: no second call.
 */
export async function checkJobs(queue: Queue, expected: readonly ExpectedTouch[], outcomes: readonly string[] = ['sent']): Promise<{ problems: string[]; outcomes: Record<string, number> }> {
  const problems: string[] = [];
  const counts: Record<string, number> = {};
  const want = new Map(expected.map((t) => [t.touchId, t]));
  const jobs = await queue.getJobs(['completed', 'failed', 'waiting', 'active', 'delayed']);
  const seen = new Set<string>();
  for (const job of jobs) {
    const id = job.id ?? '';
    seen.add(id);
    const t = want.get(id);
    if (t === undefined) {
      problems.push(`job ${id} the reference does not expect: ${JSON.stringify(job.data).slice(0, 300)}`);
      continue;
    }
    const d = job.data as Record<string, unknown>;
    const got = { touchId: d.touchId, userId: d.userId, journeyId: d.journeyId, stepId: d.stepId, channel: d.channel, template: d.template, variant: d.variant, triggerEventId: d.triggerEventId, sendAt: d.sendAt };
    if (JSON.stringify(got) !== JSON.stringify(t)) problems.push(`job ${id}: ${JSON.stringify(got)}, reference ${JSON.stringify(t)}`);
    if (job.name !== t.channel) problems.push(`job ${id} is named ${job.name}, not ${t.channel}`);
    const outcome = (job.returnvalue as { outcome?: string } | null)?.outcome ?? 'none';
    counts[outcome] = (counts[outcome] ?? 0) + 1;
    if (!outcomes.includes(outcome)) problems.push(`job ${id} ended ${outcome} (${job.failedReason ?? 'not failed'})`);
  }
  for (const t of expected) if (!seen.has(t.touchId)) problems.push(`no job for ${t.journeyId} of ${t.userId} (${t.touchId})`);
  return { problems, outcomes: counts };
}

/**
 * Each user's last 32 applied event ids, in the order the engine applied them, against the
 * model's (arrival order): an event applied twice, lost, or applied out of its user's order
 * changes this list. With userMismatches (kept counter times in arrival order, streaks, last
 * seen) it is how these tests see per-user order.
 */
export async function recentIdMismatches(queries: StateQueries, ref: RefResult): Promise<string[]> {
  const out: string[] = [];
  for (const [userId, u] of ref.users) {
    const s = await queries.userState(userId);
    const got = s?.recentIds ?? null;
    if (JSON.stringify(got) !== JSON.stringify(u.recentIds)) out.push(`${userId}: engine ${JSON.stringify(got)}, reference ${JSON.stringify(u.recentIds)}`);
  }
  return out;
}

export async function outboxDepth(redis: Redis, namespace: string, topic: string, partitions: Iterable<number>): Promise<number> {
  let n = 0;
  for (const p of partitions) n += await redis.hlen(laneKeys(namespace, topic, p).outbox);
  return n;
}

/** Outbox entries (touch ids) of every lane. */
export async function outboxIds(redis: Redis, namespace: string, topic: string, partitions: Iterable<number>): Promise<string[]> {
  const out: string[] = [];
  for (const p of partitions) out.push(...(await redis.hkeys(laneKeys(namespace, topic, p).outbox)));
  return out;
}

/** Resolves when BullMQ has nothing waiting, active, delayed or prioritized. */
export async function queueSettled(queue: Queue, timeoutMs: number): Promise<void> {
  await until('BullMQ to settle', timeoutMs, async () => {
    const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
    return Object.values(c).every((n) => n === 0);
  }, 100);
}

/** Deletes a BullMQ queue's keys. */
export async function dropQueue(redis: Redis, queue: string): Promise<void> {
  await dropKeys(redis, [`bull:${queue}:*`]);
}

/**
 * The end of a chaos run, once the last engine is running: waits for its lanes to reach the end
 * of the log, for every expected touch to reach the receiver (a timeout only warns: the
 * delivery checks then say what is missing), for the outboxes to empty and the queue to settle.
 */
export async function finishRun(o: {
  redis: Redis;
  namespace: string;
  topic: string;
  ends: ReadonlyMap<number, number>;
  expected: readonly ExpectedTouch[];
  requests: readonly ReceivedRequest[];
  queue: Queue;
  onApplied?: () => void;
}): Promise<void> {
  await waitForLanes(o.redis, o.namespace, o.topic, new Map(o.ends), 180_000);
  o.onApplied?.();
  const want = new Set(o.expected.map((t) => t.touchId));
  await until(`${want.size} distinct touches delivered`, 120_000, () => {
    const got = new Set(o.requests.map((r) => r.id));
    return [...want].every((id) => got.has(id));
  }, 200).catch((err: Error) => console.warn(err.message)); // what is missing is reported by the checks
  await until('the outboxes to be empty', 30_000, async () => (await outboxDepth(o.redis, o.namespace, o.topic, o.ends.keys())) === 0);
  await queueSettled(o.queue, 30_000);
}

/** Every count, every user, the recorded stages and each user's applied ids in order equal the model. */
export async function expectStateEqualsModel(queries: StateQueries, ref: RefResult, now: number): Promise<void> {
  expect((await countMismatches(queries, ref, STATE_REF_SPEC)).slice(0, 20)).toEqual([]);
  expect((await userMismatches(queries, ref, STATE_REF_SPEC, now)).slice(0, 10)).toEqual([]);
  expect(await queries.stageCounts()).toEqual(referenceStageCounts(ref, STATE_REF_SPEC, now));
  expect((await recentIdMismatches(queries, ref)).slice(0, 10)).toEqual([]);
}

/**
 * Every device's sign-up set (behaviour.deviceSignups) holds one member per user whose first
 * applied sign-up came from that device, naming the message that carried it (partition, offset,
 * user) and scored by its time, as the reference has it: none lost to a kill, none extra (a
 * sign-up recorded twice, or from an event that was not the user's first applied one), none on
 * the wrong device or with the wrong time. Compared as groups of members, one group per device,
 * so the test needs neither the engine's device hash nor its key for a device: only the key
 * pattern of the definition. Assumes nothing was trimmed (stateYaml keeps sign-ups 60 days).
 */
export async function expectDeviceSetsEqualModel(redis: Redis, namespace: string, topic: string, ref: RefResult): Promise<void> {
  const byDevice = new Map<string, string[]>();
  for (const [userId, u] of ref.users) {
    if (u.signup === null) continue;
    const group = byDevice.get(u.signup.deviceId) ?? [];
    group.push(`${u.signup.partition}:${u.signup.offset}:${userId}@${u.signup.at}`);
    byDevice.set(u.signup.deviceId, group);
  }
  const want = [...byDevice.values()].map((g) => g.sort().join(' ')).sort();
  // SCAN may return a key twice (while Redis resizes its table): the keys are collected first.
  const keys = new Set<string>();
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `{${namespace}:${topic}:d:${SIGNUPS_NAME}/*}`, 'COUNT', '1000');
    cursor = next;
    for (const key of batch) keys.add(key);
  } while (cursor !== '0');
  const got: string[] = [];
  for (const key of keys) {
    const flat = await redis.zrange(key, '0', '-1', 'WITHSCORES');
    const members: string[] = [];
    for (let i = 0; i < flat.length; i += 2) members.push(`${flat[i]}@${flat[i + 1]}`);
    got.push(members.sort().join(' '));
  }
  got.sort();
  // Not trivial: devices shared by several users (the log's sign-up farms) are in it.
  expect(want.length).toBeGreaterThan(20);
  expect(want.some((g) => g.includes(' '))).toBe(true);
  expect(got.length, 'devices with sign-ups').toBe(want.length);
  expect(got).toEqual(want);
}
