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
import type { RawMessage } from '../../src/pipeline/types.js';
import { applyEvents } from '../../src/state/decide.js';
import { deviceHash, deviceSetId } from '../../src/state/device-signups.js';
import { deviceSignupsKey } from '../../src/state/keys.js';
import { LaneStore } from '../../src/state/lane-store.js';
import { dropNamespace, testConfig } from '../support/engine-harness.js';

/**
 * A lane writes each sign-up the step recorded to its device's set, named by the partition and
 * offset of the sign-up event (a later decision counts it by that). The lane finds the offsets by
 * walking the batch for the step's own event objects; a step that hands back copies of them
 * (a test double, or a future step) must give the same members, found by event id.
 */
const T0 = Date.UTC(2026, 11, 3, 9);
const MINUTE = 60_000;

function yaml(namespace: string): string {
  return `
kafka:
  brokers: [${inject('kafkaBrokers')}]
  topic: events
  groupId: unused
redis:
  url: ${inject('redisUrl')}
  keyPrefix: ${namespace}
time:
  reportingTimeZone: UTC
behaviour:
  deviceSignups:
    - { name: signups_24h, match: { name: register }, within: 24h }
`;
}

const ev = (eventId: string, userId: string, name: string, timeMs: number, deviceId: string): AppEvent => ({
  eventId, userId, name, timeMs, channel: 'app', props: {}, value: 0, tz: '', deviceId, sentMs: 0,
});

/** The real step, on copies of the events it is given (so its sign-ups name other objects). */
const copyingDecide: typeof applyEvents = (events, ...rest) => applyEvents(events.map((e) => ({ ...e })), ...rest);

let redis: Redis;
beforeAll(() => {
  redis = new Redis(inject('redisUrl'));
});
afterAll(async () => {
  await redis.quit();
});

describe('device sign-ups written by a lane (real Redis)', () => {
  for (const [name, decide] of [['the real step', undefined], ['a step that copies its events', copyingDecide]] as const) {
    it(`names each sign-up by its event's partition and offset (${name})`, async () => {
      const namespace = `s${randomBytes(4).toString('hex')}`;
      onTestFinished(() => dropNamespace(redis, namespace));
      const spec = compileStateSpec(testConfig(yaml(namespace)).config);
      const lanes = new Lanes({
        store: new LaneStore(redis, namespace, 'events'),
        spec,
        limits: DEFAULT_EVENT_LIMITS,
        dlq: { send: async () => undefined },
        offsets: { commit: () => undefined },
        metrics: new PipelineMetrics(createMetricsRegistry({ processMetrics: false })),
        logger: silentLogger(),
        clock: () => T0 + 10 * MINUTE,
        ...(decide ? { decide } : {}),
      });
      onTestFinished(() => lanes.close().then(() => undefined));
      await lanes.assign([2]);
      // Offsets 40..45: two sign-ups on one device, one on another, a repeat register (not a
      // second sign-up), events that are no sign-up, and a sign-up without a device.
      const batch = [
        ev('a1', 'alice', 'login', T0, 'farm'),
        ev('a2', 'alice', 'register', T0 + MINUTE, 'farm'),
        ev('b1', 'bob', 'register', T0 + 2 * MINUTE, 'farm'),
        ev('a3', 'alice', 'register', T0 + 3 * MINUTE, 'farm'),
        ev('c1', 'carol', 'register', T0 + 4 * MINUTE, 'phone-c'),
        ev('d1', 'dave', 'register', T0 + 5 * MINUTE, ''),
      ];
      const messages: RawMessage[] = batch.map((e, i) => ({ partition: 2, offset: 40 + i, key: e.userId, value: Buffer.from(encodeEvent(e)), timestamp: T0 }));
      await lanes.submit({ partition: 2, messages });
      await lanes.idle();

      const members = async (device: string) => redis.zrange(deviceSignupsKey(namespace, 'events', deviceSetId('signups_24h', deviceHash(device))), '0', '-1', 'WITHSCORES');
      expect(await members('farm')).toEqual(['2:41:alice', String(T0 + MINUTE), '2:42:bob', String(T0 + 2 * MINUTE)]);
      expect(await members('phone-c')).toEqual(['2:44:carol', String(T0 + 4 * MINUTE)]);
    });
  }
});
