import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { DEFAULT_EVENT_LIMITS } from '../../src/contract/validate.js';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import { PipelineMetrics } from '../../src/metrics/pipeline-metrics.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { TIMER_POISON_RETRY_MS } from '../../src/pipeline/lane-steps.js';
import { Lanes } from '../../src/pipeline/lanes.js';
import type { DeadLetter, RawMessage } from '../../src/pipeline/types.js';
import { applyEvents, applyTimers } from '../../src/state/decide.js';
import { laneKeys } from '../../src/state/keys.js';
import { LaneStore } from '../../src/state/lane-store.js';
import type { StateSpec } from '../../src/state/spec.js';
import { createTopic, deleteTopics, uniqueName, withAdmin } from '../support/kafka-admin.js';
import { readTopic } from '../support/topic-reader.js';
import { until } from '../support/poll.js';
import { dropNamespace, highWatermarks, produceLog, testConfig, waitForLanes } from '../support/engine-harness.js';
import type { LogMessage } from '../support/reference-log.js';

/**
 * Poison isolation: a valid event that makes the pure state step throw used to make its whole
 * batch fail ("lane batch failed"): nothing applied, no dead letter, no offset committed, and the
 * lane's fence stuck — every redelivery failed the same way. Now only that event goes to the
 * dead-letter topic (original bytes, NUDGE_EVENT_POISON, a reason without event data), the
 * events around it are applied, and the fence and the group offset move past it.
 */
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 4, 4, 8);
const POISON_ID = 'poison-event-1';
const SECRET = 'user-with-a-secret-name';

const event = (eventId: string, userId: string, timeMs: number): AppEvent => ({
  eventId, userId, name: 'login', timeMs, channel: 'app', props: {}, value: 0, tz: '', deviceId: '', sentMs: 0,
});

/** The real step, except that it throws — mid-batch, quoting the user — on one chosen event. */
const poisonedDecide: typeof applyEvents = (events, ...rest) => {
  for (const e of events) if (e.eventId === POISON_ID) throw new TypeError(`cannot handle ${e.userId}`);
  return applyEvents(events, ...rest);
};

function yaml(topic: string, groupId: string, namespace: string): string {
  return `
kafka:
  brokers: [${inject('kafkaBrokers')}]
  topic: ${topic}
  dlqTopic: ${topic}.dlq
  groupId: ${groupId}
redis:
  url: ${inject('redisUrl')}
  keyPrefix: ${namespace}
http:
  port: 0
time:
  reportingTimeZone: UTC
`;
}

let redis: Redis;
beforeAll(() => {
  redis = new Redis(inject('redisUrl'));
});
afterAll(async () => {
  await redis.quit();
});

describe('a poison event in a lane (real Redis)', () => {
  const namespace = `p${randomBytes(4).toString('hex')}`;
  const topic = 'events';
  let spec: StateSpec;
  let store: LaneStore;

  beforeAll(() => {
    spec = compileStateSpec(testConfig(yaml(topic, 'unused', namespace)).config);
    store = new LaneStore(redis, namespace, topic);
  });
  afterAll(() => dropNamespace(redis, namespace));

  function lanesFor(options: { decide?: typeof applyEvents; decideTimers?: typeof applyTimers; clock?: () => number; logger?: Logger } = {}) {
    const registry = createMetricsRegistry({ processMetrics: false });
    const metrics = new PipelineMetrics(registry);
    const dead: DeadLetter[] = [];
    const commits: Array<[number, number]> = [];
    const lanes = new Lanes({
      store,
      spec,
      limits: DEFAULT_EVENT_LIMITS,
      dlq: { send: async (entries) => void dead.push(...entries) },
      offsets: { commit: (partition, next) => void commits.push([partition, next]) },
      metrics,
      logger: options.logger ?? silentLogger(),
      clock: options.clock ?? (() => T0 + DAY),
      decide: options.decide ?? poisonedDecide,
      ...(options.decideTimers ? { decideTimers: options.decideTimers } : {}),
    });
    onTestFinished(() => lanes.close().then(() => undefined));
    return { lanes, metrics, dead, commits };
  }

  it('dead-letters only the poison event, applies the events around it and moves the fence past it', async () => {
    const { lanes, metrics, dead, commits } = lanesFor();
    await lanes.assign([0]);
    const events = [
      event('e0', 'u0', T0),
      event('e1', SECRET, T0 + 1_000), // the poison event's user, applied before it
      event('e2', 'u2', T0 + 2_000),
      { ...event(POISON_ID, SECRET, T0 + 3_000), name: 'transfer_done' },
      event('e4', 'u4', T0 + 4_000),
      event('e5', SECRET, T0 + 5_000), // and after it
    ];
    const messages: RawMessage[] = events.map((e, i) => ({ partition: 0, offset: 100 + i, key: e.userId, value: Buffer.from(encodeEvent(e)), timestamp: T0 }));
    await lanes.submit({ partition: 0, messages });
    await lanes.idle();

    expect(dead).toHaveLength(1);
    const [letter] = dead as [DeadLetter];
    expect(letter).toMatchObject({ partition: 0, offset: 103, key: SECRET, code: 'NUDGE_EVENT_POISON' });
    expect(Buffer.compare(letter.value as Buffer, messages[3]!.value as Buffer)).toBe(0);
    expect(letter.reason).toMatch(/^the state step threw TypeError at [\w.-]+\.ts:\d+:\d+; the event was skipped/);
    expect(letter.reason).not.toContain(SECRET);

    expect(commits).toEqual([[0, 106]]);
    expect((await store.readFence(0)).offset).toBe(105);
    const users = await store.loadUsers(0, ['u0', 'u2', 'u4', SECRET]);
    for (const u of ['u0', 'u2', 'u4']) expect(users.get(u), u).toBeDefined();
    expect(users.get(SECRET)?.recentIds).toEqual(['e1', 'e5']);
    expect((await metrics.eventsInvalid.get()).values).toEqual([{ value: 1, labels: { code: 'NUDGE_EVENT_POISON' } }]);
    expect((await metrics.eventsApplied.get()).values[0]?.value).toBe(5);

    // The lane is not stuck: the next batch is applied as usual.
    await lanes.submit({ partition: 0, messages: [{ partition: 0, offset: 106, key: 'u6', value: Buffer.from(encodeEvent(event('e6', 'u6', T0 + 6_000))) }] });
    await lanes.idle();
    expect((await store.readFence(0)).offset).toBe(106);
    expect(dead).toHaveLength(1);
  });

  it('re-runs a batch on states loaded afresh when the step threw after changing them in place', async () => {
    // The lanes give the loaded states to the step to change in place (no copies). A step that
    // throws halfway has then changed them: isolation must not run on those, or the events
    // before the throw are applied twice — found as duplicates, and their counts lost.
    const halfway: typeof applyEvents = (events, loaded, ...rest) => {
      const at = events.findIndex((e) => e.eventId === POISON_ID);
      if (at < 0) return applyEvents(events, loaded, ...rest);
      applyEvents(events.slice(0, at), loaded, ...rest);
      throw new TypeError('the step gave up halfway');
    };
    const { lanes, metrics, dead } = lanesFor({ decide: halfway });
    await lanes.assign([2]);
    const user = 'u-halfway';
    const first = event('h0', user, T0);
    await lanes.submit({ partition: 2, messages: [{ partition: 2, offset: 0, key: user, value: Buffer.from(encodeEvent(first)), timestamp: T0 }] });
    await lanes.idle();
    expect((await store.loadUsers(2, [user])).get(user)?.recentIds).toEqual(['h0']);

    const next = [event('h1', user, T0 + DAY / 2), event(POISON_ID, user, T0 + DAY / 2 + 1_000), event('h2', user, T0 + DAY / 2 + 2_000)];
    await lanes.submit({ partition: 2, messages: next.map((e, i) => ({ partition: 2, offset: 1 + i, key: user, value: Buffer.from(encodeEvent(e)), timestamp: T0 })) });
    await lanes.idle();

    expect(dead.map((d) => d.offset)).toEqual([2]);
    const stored = (await store.loadUsers(2, [user])).get(user);
    expect(stored?.recentIds).toEqual(['h0', 'h1', 'h2']);
    expect(stored?.lastSeen).toBe(T0 + DAY / 2 + 2_000);
    expect((await metrics.eventsApplied.get()).values[0]?.value).toBe(3);
    expect((await metrics.eventsDuplicate.get()).values.reduce((n, v) => n + v.value, 0)).toBe(0);
  });

  it('applies a batch from copies, and says so, when the step throws only on the states it was given to change', async () => {
    // A bug of the in-place path alone: the copying run (isolation's) is the reference and
    // passes, so nothing is dead-lettered; the failure must still be logged, not swallowed.
    const ownedOnly: typeof applyEvents = (events, loaded, streamTime, now, stepSpec, devices, owned) => {
      if (owned === true) throw new RangeError('the in-place path is broken');
      return applyEvents(events, loaded, streamTime, now, stepSpec, devices, owned);
    };
    const lines: string[] = [];
    const logger = createLogger({ destination: new Writable({ write: (chunk: Buffer, _enc, done) => void (lines.push(chunk.toString()), done()) }) });
    const { lanes, metrics, dead } = lanesFor({ decide: ownedOnly, logger });
    await lanes.assign([3]);
    const batch = [event('o1', 'u-owned', T0), event('o2', 'u-owned', T0 + 1_000)];
    await lanes.submit({ partition: 3, messages: batch.map((e, i) => ({ partition: 3, offset: i, key: e.userId, value: Buffer.from(encodeEvent(e)), timestamp: T0 })) });
    await lanes.idle();

    expect(dead).toEqual([]);
    expect((await store.loadUsers(3, ['u-owned'])).get('u-owned')?.recentIds).toEqual(['o1', 'o2']);
    expect((await metrics.eventsApplied.get()).values[0]?.value).toBe(2);
    const logged = lines.map((l) => JSON.parse(l) as { level: string; msg: string; err?: string; code?: string }).filter((l) => l.level === 'error');
    expect(logged).toHaveLength(1);
    expect(logged[0]?.msg).toMatch(/threw on the states it was given to change in place, and not on copies/);
    expect(logged[0]?.err).toMatch(/^RangeError at /);
  });

  it('puts off the timer of a user the timer step throws on, and fires the others', async () => {
    const now = T0 + 8 * DAY; // past `newFor` (7 days): every user's timer is due
    const first = lanesFor({ clock: () => T0 });
    await first.lanes.assign([1]);
    const users = ['t1', 't-bad', 't2'];
    await first.lanes.submit({ partition: 1, messages: users.map((u, i) => ({ partition: 1, offset: i, key: u, value: Buffer.from(encodeEvent(event(`t${i}`, u, T0))) })) });
    await first.lanes.idle();
    await first.lanes.close();

    const { lanes, metrics } = lanesFor({
      clock: () => now,
      decideTimers: (ids, ...rest) => {
        if (ids.includes('t-bad')) throw new RangeError('bad timer');
        return applyTimers(ids, ...rest);
      },
    });
    await lanes.assign([1]);
    expect(await store.dueTimers(1, now, 10)).toHaveLength(3);
    expect(await lanes.submitTimers(1, await store.dueTimers(1, now, 10))).toBe(true);
    await lanes.idle();

    const timers = laneKeys(namespace, topic, 1).timers;
    expect(Number(await redis.zscore(timers, 't-bad'))).toBe(now + TIMER_POISON_RETRY_MS);
    for (const u of ['t1', 't2']) expect(Number(await redis.zscore(timers, u)), u).toBeGreaterThan(now + TIMER_POISON_RETRY_MS);
    expect(await store.dueTimers(1, now, 10)).toEqual([]);
    const states = await store.loadUsers(1, users);
    expect(states.get('t1')?.stage).not.toBe('new');
    expect(states.get('t-bad')?.stage).toBe('new');
    expect((await metrics.timersPoisoned.get()).values[0]?.value).toBe(1);
  });
});

describe('a poison event through the real broker', () => {
  const brokers = inject('kafkaBrokers');
  const topic = uniqueName('poison-events');
  const dlqTopic = `${topic}.dlq`;
  const group = uniqueName('poison-group');
  const namespace = `p${randomBytes(4).toString('hex')}`;

  afterAll(async () => {
    await dropNamespace(redis, namespace);
    await deleteTopics(brokers, [topic, dlqTopic]);
  });

  it('lands in the dead-letter topic exactly once with its original bytes; the partition reaches its end', async () => {
    await createTopic(brokers, topic, 2);
    await createTopic(brokers, dlqTopic, 1);
    const log: LogMessage[] = [];
    for (let i = 0; i < 200; i++) {
      const partition = i % 2;
      const e = i === 101 ? event(POISON_ID, SECRET, T0 + i) : event(`k${i}`, `user-${i % 17}`, T0 + i);
      log.push({ partition, key: e.userId, value: Buffer.from(encodeEvent(e)), ref: undefined as never });
    }
    await produceLog(brokers, topic, log);
    const ends = await highWatermarks(brokers, topic);

    const { config } = testConfig(yaml(topic, group, namespace));
    const engine = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry(), clock: () => T0 + DAY, http: false, decide: poisonedDecide, maxBatch: 20 });
    onTestFinished(() => engine.stop());
    await engine.start();
    await waitForLanes(redis, namespace, topic, ends, 60_000);
    await engine.idle();

    expect((await highWatermarks(brokers, dlqTopic)).get(0)).toBe(1);
    const [letter] = await readTopic(brokers, dlqTopic, { count: 1, timeoutMs: 30_000 });
    const poison = log[101]!;
    expect(Buffer.compare(letter!.value, poison.value)).toBe(0);
    expect(letter!.key).toBe(SECRET);
    expect(letter!.headers).toMatchObject({ 'nudge-error-code': 'NUDGE_EVENT_POISON', 'nudge-source-partition': '1' });
    expect(letter!.headers['nudge-error']).not.toContain(SECRET);
    // Every other event was applied: 17 users, 199 events.
    expect((await engine.metrics.eventsApplied.get()).values[0]?.value).toBe(199);
    for (let u = 0; u < 17; u++) expect(await engine.queries.userState(`user-${u}`), `user-${u}`).not.toBeNull();
    expect(await engine.queries.userState(SECRET)).toBeNull();

    // The group offset moved past it too: a restart in the same group re-reads nothing and
    // sends no second dead letter.
    await engine.stop();
    const committed = await withAdmin(brokers, (admin) => admin.fetchOffsets({ groupId: group, topics: [topic] }));
    expect(new Map(committed[0]!.partitions.map((p) => [p.partition, Number(p.offset)]))).toEqual(ends);
    const again = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry(), clock: () => T0 + DAY, http: false, decide: poisonedDecide });
    onTestFinished(() => again.stop());
    await again.start();
    await until('the restarted engine owns both partitions', 30_000, () => again.ownedPartitions().length === 2);
    await new Promise((r) => setTimeout(r, 1_000));
    await again.idle();
    expect((await again.metrics.eventsConsumed.get()).values[0]?.value ?? 0).toBe(0);
    expect((await highWatermarks(brokers, dlqTopic)).get(0)).toBe(1);
  });
});

