import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { DEFAULT_EVENT_LIMITS } from '../../src/contract/validate.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { PipelineMetrics } from '../../src/metrics/pipeline-metrics.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { Lanes } from '../../src/pipeline/lanes.js';
import { applyEvents } from '../../src/state/decide.js';
import { laneKeys } from '../../src/state/keys.js';
import { LaneStore, type CommitOutcome, type PreparedCommit } from '../../src/state/lane-store.js';
import type { StateSpec } from '../../src/state/spec.js';
import { decodeUserState, type UserState } from '../../src/state/user-state.js';
import { dropNamespace, testConfig } from '../support/engine-harness.js';

/**
 * The per-lane cache of committed states (LaneStateCache) on a real Redis: a lane's next batch
 * takes the users it committed from memory, and the cache is dropped whenever it may no longer
 * be what Redis holds — another owner wrote (fence refusal, then a new claim) or a commit's
 * reply was lost (retry). Each case checks the state Redis ends with, not the cache itself.
 */
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 4, 4, 8);

const event = (eventId: string, userId: string, timeMs: number): AppEvent => ({
  eventId, userId, name: 'login', timeMs, channel: 'app', props: {}, value: 0, tz: '', deviceId: '', sentMs: 0,
});

/** A LaneStore that records which users it loads and can lose one commit's reply. */
class ObservedStore extends LaneStore {
  readonly loads: string[][] = [];
  loseNextReply = false;

  override async loadUsers(partition: number, userIds: readonly string[]): Promise<Map<string, UserState | undefined>> {
    this.loads.push([...userIds]);
    return super.loadUsers(partition, userIds);
  }

  override async sendCommit(c: PreparedCommit): Promise<CommitOutcome> {
    const outcome = await super.sendCommit(c);
    if (this.loseNextReply && c.firstOffset >= 0) {
      this.loseNextReply = false;
      throw new Error('connection reset (the script ran; its reply was lost)');
    }
    return outcome;
  }
}

let redis: Redis;
beforeAll(() => {
  redis = new Redis(inject('redisUrl'));
});
afterAll(async () => {
  await redis.quit();
});

describe('lane state cache (real Redis)', () => {
  const topic = 'events';
  let spec: StateSpec;
  const namespaces: string[] = [];

  beforeAll(() => {
    spec = compileStateSpec(testConfig(`
kafka:
  brokers: [127.0.0.1:1]
  topic: ${topic}
redis:
  url: ${inject('redisUrl')}
time:
  reportingTimeZone: UTC
`).config);
  });
  afterAll(async () => {
    for (const ns of namespaces) await dropNamespace(redis, ns);
  });

  function setup() {
    const namespace = `c${randomBytes(4).toString('hex')}`;
    namespaces.push(namespace);
    const store = new ObservedStore(redis, namespace, topic);
    const lanes = new Lanes({
      store,
      spec,
      limits: DEFAULT_EVENT_LIMITS,
      dlq: { send: async () => {} },
      offsets: { commit: () => {} },
      metrics: new PipelineMetrics(createMetricsRegistry({ processMetrics: false })),
      logger: silentLogger(),
      clock: () => T0 + DAY,
      cachedUsersPerLane: 4096,
    });
    onTestFinished(() => lanes.close().then(() => undefined));
    const submit = async (offset: number, events: AppEvent[]) => {
      await lanes.submit({
        partition: 0,
        messages: events.map((e, i) => ({ partition: 0, offset: offset + i, key: e.userId, value: Buffer.from(encodeEvent(e)), timestamp: T0 })),
      });
      await lanes.idle();
    };
    const stored = async (userId: string): Promise<UserState> => {
      const text = await redis.get(laneKeys(namespace, topic, 0).user(userId));
      if (text === null) throw new Error(`no state stored for ${userId}`);
      return decodeUserState(text);
    };
    const fence = async () => Number(await redis.hget(laneKeys(namespace, topic, 0).fence, 'offset'));
    return { namespace, store, lanes, submit, stored, fence };
  }

  it('takes the users a lane committed from memory, and Redis ends with every event', async () => {
    const { store, lanes, submit, stored } = setup();
    await lanes.assign([0]);
    await submit(0, [event('a1', 'u1', T0), event('a2', 'u2', T0)]);
    await submit(2, [event('a3', 'u1', T0 + 1_000), event('a4', 'u3', T0 + 1_000)]);
    expect(store.loads).toEqual([['u1', 'u2'], ['u3']]);
    expect((await stored('u1')).recentIds).toEqual(['a1', 'a3']);
  });

  it('drops the cache when another owner wrote: the reclaimed lane reads that owner\'s state', async () => {
    const { namespace, store, lanes, submit, stored, fence } = setup();
    await lanes.assign([0]);
    await submit(0, [event('a1', 'u1', T0)]);
    // Another member takes the lane over (new epoch) and applies an event of u1.
    const other = new LaneStore(redis, namespace, topic);
    const claimed = await other.claim(0);
    const prior = new Map([['u1', await stored('u1')]]);
    const theirs = applyEvents([event('b1', 'u1', T0 + 1_000)], prior, claimed.streamTime, T0 + DAY, spec);
    expect(await other.commit(0, claimed.epoch, 1, 1, theirs)).toBe('committed');

    // This lane's next commit is refused (it is a zombie now), and it stops.
    await submit(2, [event('a2', 'u1', T0 + 2_000)]);
    expect(await fence()).toBe(1);
    expect((await stored('u1')).recentIds).toEqual(['a1', 'b1']);

    // Assigned again: a new claim, and u1 is read from Redis, not from what this lane once held.
    store.loads.length = 0;
    const needed = await lanes.assign([0]);
    expect(needed.get(0)).toBe(2);
    await submit(2, [event('a2', 'u1', T0 + 2_000)]);
    expect(store.loads).toEqual([['u1']]);
    expect((await stored('u1')).recentIds).toEqual(['a1', 'b1', 'a2']);
  });

  it('drops the cache when a commit\'s reply is lost (retried), so the next batch loads from Redis', async () => {
    const { store, lanes, submit, stored, fence } = setup();
    await lanes.assign([0]);
    await submit(0, [event('a1', 'u1', T0)]);
    store.loseNextReply = true;
    await submit(1, [event('a2', 'u1', T0 + 1_000)]);
    expect(await fence()).toBe(1);
    store.loads.length = 0;
    await submit(2, [event('a3', 'u1', T0 + 2_000)]);
    expect(store.loads).toEqual([['u1']]);
    expect((await stored('u1')).recentIds).toEqual(['a1', 'a2', 'a3']);
  });
});

describe('lane batch merging (real Redis)', () => {
  const topic = 'events';
  const namespace = `m${randomBytes(4).toString('hex')}`;
  afterAll(() => dropNamespace(redis, namespace));

  it('merges the batches queued behind a busy lane into one commit, in offset order, with every event applied once', async () => {
    const spec = compileStateSpec(testConfig(`
kafka:
  brokers: [127.0.0.1:1]
  topic: ${topic}
redis:
  url: ${inject('redisUrl')}
time:
  reportingTimeZone: UTC
`).config);
    const commits: Array<[number, number]> = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    class GatedStore extends LaneStore {
      override async sendCommit(c: PreparedCommit): Promise<CommitOutcome> {
        // The first commit waits until the later batches are queued behind it.
        if (commits.length === 0) await gate;
        commits.push([c.firstOffset, c.lastOffset]);
        return super.sendCommit(c);
      }
    }
    const offsets: number[] = [];
    const lanes = new Lanes({
      store: new GatedStore(redis, namespace, topic),
      spec,
      limits: DEFAULT_EVENT_LIMITS,
      dlq: { send: async () => {} },
      offsets: { commit: (_p, next) => void offsets.push(next) },
      metrics: new PipelineMetrics(createMetricsRegistry({ processMetrics: false })),
      logger: silentLogger(),
      clock: () => T0 + DAY,
      maxInFlight: 8,
    });
    onTestFinished(() => lanes.close().then(() => undefined));
    await lanes.assign([0]);
    const batch = (offset: number, n: number) => ({
      partition: 0,
      messages: Array.from({ length: n }, (_, i) => {
        const e = event(`e${offset + i}`, `u${(offset + i) % 3}`, T0 + (offset + i) * 1_000);
        return { partition: 0, offset: offset + i, key: e.userId, value: Buffer.from(encodeEvent(e)), timestamp: T0 };
      }),
    });
    await lanes.submit(batch(0, 2));
    for (let o = 2; o < 10; o += 2) await lanes.submit(batch(o, 2));
    release();
    await lanes.idle();
    expect(commits).toEqual([[0, 1], [2, 9]]);
    expect(offsets).toEqual([2, 10]);
    const k = laneKeys(namespace, topic, 0);
    const ids = (await Promise.all(['u0', 'u1', 'u2'].map(async (u) => decodeUserState((await redis.get(k.user(u))) as string).recentIds))).flat().sort();
    expect(ids).toEqual(Array.from({ length: 10 }, (_, i) => `e${i}`).sort());
  });
});
