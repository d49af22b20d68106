import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import type { Counter, Gauge } from 'prom-client';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { laneKeys } from '../../src/state/keys.js';
import { decodeUserState } from '../../src/state/user-state.js';
import { createTopic, deleteTopics, uniqueName } from '../support/kafka-admin.js';
import { dropNamespace, highWatermarks, produceLog, testConfig, waitForLanes } from '../support/engine-harness.js';
import { appEvent, logMessage } from '../support/log-messages.js';
import { partitionOf, type LogMessage } from '../support/reference-log.js';
import { referenceStage, runReference, type RefSpec } from '../support/reference-model.js';

/**
 * Timers through the whole engine (issue 3, "Prove it"; DESIGN §4: "going dormant happens on
 * time, by timer, without an event"). The engine runs on a virtual wall clock
 * (EngineOptions.clock) and the test plays the periodic sweep itself with `engine.sweepNow()`,
 * one sweep per virtual sweep interval; the configured interval is long enough in real time
 * that the engine's own timer never fires during the test. What is checked is the stage
 * RECORDED in Redis (the user state's `stage`, the per-stage counts of /v1/stages and the
 * transition counter), not the stage the query side derives from the clock on the fly.
 */
const DAY = 86_400_000;
const PARTITIONS = 2;
const ZONE = 'Asia/Shanghai';

const lifecycle = { newForMs: 7 * DAY, dormantAfterMs: 14 * DAY, churnedAfterMs: 30 * DAY, reactivatedForMs: 7 * DAY };
const refSpec: RefSpec = {
  reportingTimeZone: ZONE,
  allowedLatenessMs: 2 * 3_600_000,
  maxFutureSkewMs: 5 * 60_000,
  metrics: [{ name: 'active', events: null }],
  ...lifecycle,
  counters: [],
  streaks: [],
  recentIds: 32,
};

function yaml(topic: string, namespace: string, sweepInterval: string): string {
  return `
kafka:
  brokers: [${inject('kafkaBrokers')}]
  topic: ${topic}
  dlqTopic: ${topic}.dlq
  groupId: ${uniqueName('timers-group')}
redis:
  url: ${inject('redisUrl')}
  keyPrefix: ${namespace}
http:
  port: 0
time:
  reportingTimeZone: ${ZONE}
  allowedLateness: 2h
  maxFutureSkew: 5m
activity:
  metrics:
    - name: active
lifecycle:
  newFor: 7d
  dormantAfter: 14d
  churnedAfter: 30d
  reactivatedFor: 7d
  sweepInterval: ${sweepInterval}
`;
}

/** An engine on a virtual clock with its own topic and namespace, and what a test needs around it. */
function virtualEngine(sweepInterval: string) {
  const brokers = inject('kafkaBrokers');
  const topic = uniqueName('timer-events');
  const namespace = `t${randomBytes(4).toString('hex')}`;
  const env = {
    brokers,
    topic,
    namespace,
    now: 0,
    redis: null as unknown as Redis,
    engine: null as unknown as Engine,
    async start(at: number): Promise<void> {
      env.now = at;
      env.redis = new Redis(inject('redisUrl'));
      await createTopic(brokers, topic, PARTITIONS);
      await createTopic(brokers, `${topic}.dlq`, 1);
      const { config } = testConfig(yaml(topic, namespace, sweepInterval));
      env.engine = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry(), clock: () => env.now });
      await env.engine.start();
    },
    async stop(): Promise<void> {
      await env.engine?.stop();
      if (env.redis) {
        await dropNamespace(env.redis, namespace);
        await env.redis.quit();
      }
      await deleteTopics(brokers, [topic, `${topic}.dlq`]);
    },
    /** Produces events at the current virtual time and waits until the engine applied them. */
    async deliver(messages: LogMessage[]): Promise<void> {
      await produceLog(brokers, topic, messages);
      await waitForLanes(env.redis, namespace, topic, await highWatermarks(brokers, topic), 60_000);
    },
    /** One sweep at virtual time `t`, and its timer batches committed. Returns the timers submitted. */
    async sweepAt(t: number): Promise<number> {
      env.now = t;
      const submitted = await env.engine.sweepNow();
      await env.engine.idle();
      return submitted;
    },
    async recorded(userId: string): Promise<{ stage: string; stageSince: number } | null> {
      const s = await env.engine.queries.userState(userId);
      return s === null ? null : { stage: s.stage, stageSince: s.stageSince };
    },
    /** The user's pending timer (due time) in its lane's timer set, or null. */
    async timerOf(userId: string, partition: number): Promise<number | null> {
      const score = await env.redis.zscore(laneKeys(namespace, topic, partition).timers, userId);
      return score === null ? null : Number(score);
    },
    async get(path: string): Promise<{ status: number; body: Record<string, unknown> }> {
      const res = await fetch(`${env.engine.opsUrl}${path}`);
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    },
  };
  return env;
}

async function gauge(g: Gauge): Promise<number> {
  return (await g.get()).values[0]?.value ?? 0;
}

async function byLabel(c: Counter<string>, label: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await c.get()).values) out[String(v.labels[label])] = v.value;
  return out;
}

const noStages = { new: 0, active: 0, dormant: 0, churned: 0, reactivated: 0 };

describe('one user goes dormant and churned on time, with no event arriving', () => {
  // A sweep interval of 10 minutes: in virtual time, the bound on how late a transition is
  // recorded; in real time, longer than this file runs, so only the test's sweeps happen.
  const INTERVAL = 10 * 60_000;
  const T = Date.UTC(2026, 4, 4, 3, 17, 23, 456); // the user's only event
  const env = virtualEngine('10m');
  const alice = 'alice';
  const lane = partitionOf(alice, PARTITIONS);

  beforeAll(async () => {
    await env.start(T + 1_000);
    await env.deliver([logMessage(appEvent({ eventId: 'a-1', userId: alice, name: 'login', timeMs: T }), PARTITIONS)]);
  }, 120_000);
  afterAll(() => env.stop());

  it('records the user as new, with a timer due when that ends', async () => {
    expect(await env.recorded(alice)).toEqual({ stage: 'new', stageSince: T });
    expect(await env.timerOf(alice, lane)).toBe(T + 7 * DAY);
    expect((await env.get('/v1/stages')).body).toEqual({ ...noStages, new: 1 });
  });

  it('is still not dormant 1 ms before the threshold (the end of "new" is recorded on the way)', async () => {
    expect(await env.sweepAt(T + 14 * DAY - 1)).toBe(1);
    expect(await env.recorded(alice)).toEqual({ stage: 'active', stageSince: T + 7 * DAY });
    // The only due timer was the end of "new", a week before this (first) sweep.
    expect(await gauge(env.engine.metrics.timerLag)).toBe((7 * DAY - 1) / 1000);
    expect(await env.timerOf(alice, lane)).toBe(T + 14 * DAY);
    expect((await env.get('/v1/stages')).body).toEqual({ ...noStages, active: 1 });
    expect((await env.get(`/v1/users/${alice}`)).body).toMatchObject({ stage: 'active' });
  });

  it('is dormant, since exactly the threshold, at the first sweep at most one interval after it', async () => {
    expect(await env.sweepAt(T + 14 * DAY + INTERVAL)).toBe(1);
    expect(await env.recorded(alice)).toEqual({ stage: 'dormant', stageSince: T + 14 * DAY });
    expect(await gauge(env.engine.metrics.timerLag)).toBe(INTERVAL / 1000);
    expect(await gauge(env.engine.metrics.timerBacklog)).toBe(1);
    expect((await env.get('/v1/stages')).body).toEqual({ ...noStages, dormant: 1 });
    expect((await env.get(`/v1/users/${alice}`)).body).toMatchObject({ stage: 'dormant', stageSince: new Date(T + 14 * DAY).toISOString() });
    expect(await byLabel(env.engine.metrics.transitions, 'to')).toEqual({ new: 1, active: 1, dormant: 1 });
  });

  it('records the transition once, however often the sweep runs', async () => {
    for (let t = T + 14 * DAY + 2 * INTERVAL; t < T + 14 * DAY + 20 * INTERVAL; t += INTERVAL) expect(await env.sweepAt(t)).toBe(0);
    expect(await env.sweepAt(T + 30 * DAY - 1)).toBe(0);
    expect(await gauge(env.engine.metrics.timerLag)).toBe(0);
    expect(await gauge(env.engine.metrics.timerBacklog)).toBe(0);
    expect(await env.recorded(alice)).toEqual({ stage: 'dormant', stageSince: T + 14 * DAY });
    expect((await env.get('/v1/stages')).body).toEqual({ ...noStages, dormant: 1 });
    expect(await byLabel(env.engine.metrics.transitions, 'to')).toEqual({ new: 1, active: 1, dormant: 1 });
  });

  it('is churned, since exactly 30 days after the event, and then has no timer left', async () => {
    expect(await env.sweepAt(T + 30 * DAY + INTERVAL)).toBe(1);
    expect(await env.recorded(alice)).toEqual({ stage: 'churned', stageSince: T + 30 * DAY });
    expect(await gauge(env.engine.metrics.timerLag)).toBe(INTERVAL / 1000);
    expect(await env.timerOf(alice, lane)).toBeNull();
    expect(await env.sweepAt(T + 60 * DAY)).toBe(0);
    expect((await env.get('/v1/stages')).body).toEqual({ ...noStages, churned: 1 });
    expect(await byLabel(env.engine.metrics.transitions, 'to')).toEqual({ new: 1, active: 1, dormant: 1, churned: 1 });
    // No event arrived since the first: every change above came from the sweep.
    expect((await env.engine.metrics.eventsApplied.get()).values[0]?.value).toBe(1);
    expect((await env.engine.metrics.timersFired.get()).values[0]?.value).toBe(3);
  });

  it('comes back as reactivated on an event, and its timers follow the new last-seen time', async () => {
    const back = T + 61 * DAY;
    env.now = back + 1_000;
    await env.deliver([logMessage(appEvent({ eventId: 'a-2', userId: alice, name: 'login', timeMs: back }), PARTITIONS)]);
    expect(await env.recorded(alice)).toEqual({ stage: 'reactivated', stageSince: back });
    expect(await env.timerOf(alice, lane)).toBe(back + 7 * DAY);
    expect(await env.sweepAt(back + 7 * DAY - 1)).toBe(0);
    expect(await env.sweepAt(back + 7 * DAY + INTERVAL)).toBe(1);
    expect(await env.recorded(alice)).toEqual({ stage: 'active', stageSince: back + 7 * DAY });
    expect((await env.get('/v1/stages')).body).toEqual({ ...noStages, active: 1 });
  });
});

describe('a population on virtual time: the recorded stages follow the reference at every sweep', () => {
  // Hourly sweeps over 52 virtual days. Users' thresholds fall at all sorts of minutes, so each
  // transition is recorded somewhere inside the interval that follows it.
  const INTERVAL = 3_600_000;
  const T0 = Date.UTC(2026, 6, 6, 0, 0);
  const END = T0 + 52 * DAY;
  const env = virtualEngine('1h');

  // The schedule: 16 users' first sessions in the first 12 hours, some seen again hours later;
  // then users coming back (after 3 and 9 days, still active; after 16 and 21 days, from
  // dormant; after 35 days, from churned). Each event is delivered when the clock reaches it.
  const schedule: LogMessage[] = [];
  const add = (userId: string, t: number): void => {
    schedule.push(logMessage(appEvent({ eventId: `${userId}-${schedule.length}`, userId, name: 'page_view', timeMs: t }), PARTITIONS));
  };
  for (let i = 0; i < 16; i++) {
    const first = T0 + 17 * 60_000 + i * 41 * 60_000 + i * 7_919;
    add(`u${i}`, first);
    if (i % 3 === 0) add(`u${i}`, first + 2 * 3_600_000 + 13_000);
  }
  add('u1', T0 + 3 * DAY + 5 * 3_600_000);
  add('u2', T0 + 9 * DAY + 11 * 3_600_000 + 123);
  add('u4', T0 + 16 * DAY + 2 * 3_600_000 + 999);
  add('u5', T0 + 21 * DAY + 7 * 60_000);
  add('u7', T0 + 35 * DAY + 19 * 3_600_000);
  schedule.sort((a, b) => (a.ref.event?.timeMs ?? 0) - (b.ref.event?.timeMs ?? 0));
  const users = [...new Set(schedule.map((m) => m.key))];
  const timeOf = (m: LogMessage): number => m.ref.event?.timeMs ?? 0;

  beforeAll(() => env.start(T0), 120_000);
  afterAll(() => env.stop());

  it('matches the reference stage of every user after every sweep, and counts each transition once', async () => {
    const mismatches: string[] = [];
    const entered: Record<string, number> = {};
    const previous = new Map<string, string>();
    let delivered = 0;
    let lagSeen = 0;
    let tick = T0 + 12 * 3_600_000;
    for (; tick <= END; tick += INTERVAL) {
      // Events due by this tick arrive first (the clock at the tick, so none is "from the future").
      const due = schedule.slice(delivered).filter((m) => timeOf(m) <= tick);
      env.now = tick;
      if (due.length > 0) {
        await env.deliver(due);
        delivered += due.length;
      }
      await env.sweepAt(tick);
      const lag = await gauge(env.engine.metrics.timerLag);
      // Sweeps an interval apart: nothing waits longer than one interval.
      if (lag < 0 || lag > INTERVAL / 1000) mismatches.push(`${iso(tick)}: timer lag ${lag} s`);
      lagSeen = Math.max(lagSeen, lag);

      const ref = runReference(schedule.slice(0, delivered).map((m) => m.ref), refSpec, tick);
      const states = await env.redis.mget(users.map((u) => laneKeys(env.namespace, env.topic, partitionOf(u, PARTITIONS)).user(u)));
      const counts: Record<string, number> = { ...noStages };
      users.forEach((userId, i) => {
        const text = states[i];
        const u = ref.users.get(userId);
        if (u === undefined) {
          if (text != null) mismatches.push(`${iso(tick)} ${userId}: has state before its first event`);
          return;
        }
        const want = referenceStage(u, tick, refSpec);
        counts[want] = (counts[want] ?? 0) + 1;
        if (previous.get(userId) !== want) entered[want] = (entered[want] ?? 0) + 1;
        previous.set(userId, want);
        if (text == null) return void mismatches.push(`${iso(tick)} ${userId}: no state`);
        const s = decodeUserState(text);
        const since = want === 'dormant' ? u.lastSeen + lifecycle.dormantAfterMs : want === 'churned' ? u.lastSeen + lifecycle.churnedAfterMs : s.stageSince;
        if (s.stage !== want || s.stageSince !== since) {
          mismatches.push(`${iso(tick)} ${userId}: recorded ${s.stage} since ${iso(s.stageSince)}, reference ${want} since ${iso(since)}`);
        }
      });
      const stages = await env.engine.queries.stageCounts();
      if (JSON.stringify(stages) !== JSON.stringify(counts)) mismatches.push(`${iso(tick)}: stage counts ${JSON.stringify(stages)}, reference ${JSON.stringify(counts)}`);
      if (mismatches.length > 10) break;
    }
    expect(mismatches).toEqual([]);
    expect(delivered).toBe(schedule.length);
    // The walk saw every kind of transition, and the engine recorded each exactly once.
    expect(entered).toMatchObject({ new: 16, dormant: expect.any(Number), churned: expect.any(Number), reactivated: 3 });
    expect(entered.dormant).toBeGreaterThanOrEqual(16);
    expect(await byLabel(env.engine.metrics.transitions, 'to')).toEqual(entered);
    expect(lagSeen).toBeGreaterThan(0);
    // Only the scheduled events were applied: everything else was the sweep's doing.
    expect((await env.engine.metrics.eventsApplied.get()).values[0]?.value).toBe(schedule.length);
  }, 240_000);
});

const iso = (t: number): string => new Date(t).toISOString();
