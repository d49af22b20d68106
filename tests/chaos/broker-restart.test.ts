import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { EventProducer } from '../../src/sources/event-producer.js';
import { StateQueries } from '../../src/state/queries.js';
import { DAY, STATE_REF_SPEC, STATE_YAML, ZONE, eventIdOf, kafkaYaml, startRestartableBroker, type RestartableBroker } from '../support/chaos-services.js';
import { createTopic, uniqueName } from '../support/kafka-admin.js';
import { readTopic } from '../support/topic-reader.js';
import { dropNamespace, highWatermarks, testConfig, waitForLanes } from '../support/engine-harness.js';
import { readMetric, startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { appliedMessages, readFences, waitForFences } from '../support/lane-fences.js';
import { countMismatches, userMismatches } from '../support/reference-compare.js';
import { buildReferenceLog, type LogMessage } from '../support/reference-log.js';
import { runReference, type RefEvent, type RefMessage } from '../support/reference-model.js';

/**
 * Broker killed and restarted (issue 6 item 4; the shared research brief reliability.md G5). A private single-node Kafka
 * broker (never the shared one other files use) is SIGKILLed while the engine — a child
 * process — is working through a backlog, and while a producer keeps producing (its messages
 * wait in librdkafka's queue) and clients POST /v1/events. It stays down for DOWN_MS, then
 * starts again on the same data dir. Proven:
 *  - the engine neither crashes nor restarts (same process throughout, graceful exit 0 after);
 *  - POST /v1/events answers 503 while the broker is down, 202 once it is back, and every event
 *    of a 202 is in the topic afterwards;
 *  - the engine commits state again within 60 s of the broker being back;
 *  - nothing is lost or applied twice: the topic is read back from the broker (what it really
 *    holds, not what the producer believes it sent) and the brute-force reference run over it
 *    equals the engine's state, every day's counts and every user.
 */
const PARTITIONS = 4;
const START = Date.UTC(2026, 2, 2);
const DAYS = 40;
const NOW = START + (DAYS + 2) * DAY;
const DOWN_MS = 15_000;
const HTTP_USERS = 60;

describe('broker killed and restarted', () => {
  const topic = uniqueName('chaos-broker');
  const group = uniqueName('chaos-broker-group');
  const namespace = `b${randomBytes(4).toString('hex')}`;
  let broker: RestartableBroker;
  let redis: Redis;
  let log: LogMessage[];
  let file: string;
  let queries: StateQueries;
  let engine: EngineProcess | undefined;

  beforeAll(async () => {
    broker = await startRestartableBroker();
    redis = new Redis(inject('redisUrl'));
    log = buildReferenceLog({ seed: 4_410_021, users: 2_000, days: DAYS, events: 40_000, partitions: PARTITIONS, startMs: START, nowMs: NOW, reportingTimeZone: ZONE });
    await createTopic(broker.brokers, topic, PARTITIONS);
    await createTopic(broker.brokers, `${topic}.dlq`, 1);
    const written = testConfig(`${kafkaYaml(broker.brokers, topic, group)}
redis:
  url: ${inject('redisUrl')}
  keyPrefix: ${namespace}
http:
  port: 0
${STATE_YAML}`);
    file = written.file;
    queries = new StateQueries(redis, namespace, topic, compileStateSpec(written.config));
  }, 180_000);

  afterAll(async () => {
    await engine?.kill();
    await broker?.stop();
    await dropNamespace(redis, namespace);
    await redis.quit();
  });

  it('keeps running, answers 503 while the broker is down, resumes within 60 s and loses nothing', async () => {
    const producer = new EventProducer({ connection: { 'bootstrap.servers': broker.brokers } });
    await producer.connect();
    const produce = async (part: LogMessage[]) => {
      for (const m of part) await producer.produce(topic, m.key, m.value, undefined, m.partition);
    };
    const phaseA = log.slice(0, Math.floor(log.length * 0.5));
    const phaseB = log.slice(phaseA.length, Math.floor(log.length * 0.75));
    const phaseC = log.slice(phaseA.length + phaseB.length);
    await produce(phaseA);
    expect((await producer.flush()).failed).toBe(0);
    const endsA = await highWatermarks(broker.brokers, topic);

    engine = await startEngineProcess({ configFile: file, clockMs: NOW, maxBatch: 100 });
    const pid = engine.pid;
    await waitForFences(redis, namespace, topic, endsA, (f) => appliedMessages(f) >= phaseA.length * 0.3, 'engine to apply 30% of the first half', 120_000);

    await broker.crash();
    const atCrash = appliedMessages(await readFences(redis, namespace, topic, endsA.keys()));
    expect(atCrash, 'the engine had caught up before the crash: nothing to resume').toBeLessThan(phaseA.length);
    const downAt = Date.now();
    // Producing while the broker is down: the producer queues (nothing is acknowledged yet).
    await produce(phaseB);
    // Ingest while down: 503, and nothing claimed as accepted.
    const httpEvents = Array.from({ length: HTTP_USERS }, (_, i) => ({
      eventId: `${namespace}-http-${i}`,
      userId: `http-user-${i}`,
      name: 'login',
      // Ahead of the engine's clock by more than the skew: clamped to it, so these users are
      // seen "now" without moving any lane's stream time (the log's events stay on time).
      timeMs: NOW + 2 * DAY,
      channel: 'web',
      tz: 'UTC',
    }));
    const whileDown = await postEvents(engine.opsUrl, httpEvents);
    expect(whileDown.status).toBe(503);
    expect(whileDown.headers.get('retry-after')).not.toBeNull();
    await new Promise((r) => setTimeout(r, Math.max(0, DOWN_MS - (Date.now() - downAt))));
    expect(await Promise.race([engine.exited.then(() => 'exited'), Promise.resolve('running')])).toBe('running');

    await broker.restart();
    const backAt = Date.now();
    // Consumption resumes: the fences move past where they stood while the broker was down.
    const stood = appliedMessages(await readFences(redis, namespace, topic, endsA.keys()));
    await waitForFences(redis, namespace, topic, endsA, (f) => appliedMessages(f) > stood, 'first commit after the broker came back', 60_000, 100);
    const resumedMs = Date.now() - backAt;

    // The client retries its whole request, as the 503 says (event ids make that safe).
    let accepted: Response | undefined;
    const retryDeadline = Date.now() + 60_000;
    while (accepted?.status !== 202) {
      if (Date.now() > retryDeadline) throw new Error(`POST /v1/events still answers ${accepted?.status} 60 s after the broker came back`);
      accepted = await postEvents(engine.opsUrl, httpEvents);
    }
    expect(await accepted.json()).toMatchObject({ accepted: HTTP_USERS, rejected: 0 });
    const producedB = await producer.flush(120_000);
    expect(producedB.failed, producedB.firstError).toBe(0);
    await produce(phaseC);
    expect((await producer.flush()).failed).toBe(0);
    await producer.disconnect();

    const ends = await highWatermarks(broker.brokers, topic);
    await waitForLanes(redis, namespace, topic, ends, 180_000);
    const consumed = await readMetric(engine.opsUrl, 'nudge_events_consumed_total');
    console.info(`broker-restart: killed at ${atCrash}/${phaseA.length} applied, down ${DOWN_MS} ms, first commit ${resumedMs} ms after the broker was back; ${consumed} messages consumed for ${[...ends.values()].reduce((a, b) => a + b, 0)} in the topic`);
    expect(resumedMs).toBeLessThan(60_000);

    // Ground truth: what the broker holds, each message mapped back to the event it carries.
    const byBytes = new Map(log.map((m) => [m.value.toString('hex'), m.ref.event]));
    const byHttpId = new Map<string, RefEvent>(httpEvents.map((e) => [e.eventId, { ...e, props: {}, value: 0 }]));
    const held = await readTopic(broker.brokers, topic);
    const messages: RefMessage[] = held.map((m) => {
      const fromLog = byBytes.get(m.value.toString('hex'));
      if (fromLog !== undefined) return { partition: m.partition, event: fromLog };
      const id = eventIdOf(m.value);
      const fromHttp = id === null ? undefined : byHttpId.get(id);
      if (fromHttp === undefined) throw new Error(`p${m.partition}@${m.offset}: a message nobody produced`);
      return { partition: m.partition, event: fromHttp };
    });
    // Nothing acknowledged is missing: every log message (all were acknowledged: failed = 0)
    // and every event of the 202.
    const heldBytes = new Set(held.map((m) => m.value.toString('hex')));
    expect(log.filter((m) => !heldBytes.has(m.value.toString('hex'))).length).toBe(0);
    const heldIds = new Set(held.map((m) => eventIdOf(m.value)));
    expect(httpEvents.filter((e) => !heldIds.has(e.eventId)).map((e) => e.eventId)).toEqual([]);

    const ref = runReference(messages, STATE_REF_SPEC, NOW);
    expect((await countMismatches(queries, ref, STATE_REF_SPEC)).slice(0, 20)).toEqual([]);
    expect((await userMismatches(queries, ref, STATE_REF_SPEC, NOW)).slice(0, 10)).toEqual([]);

    // The same process throughout: it never exited (a crash would have resolved `exited`).
    expect(await Promise.race([engine.exited.then(() => 'exited'), Promise.resolve('running')])).toBe('running');
    expect(engine.pid).toBe(pid);
    await engine.stop();
    expect(await engine.exited).toMatchObject({ code: 0 });
  }, 420_000);
});

async function postEvents(opsUrl: string, events: unknown[]): Promise<Response> {
  return fetch(`${opsUrl}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(events) });
}
