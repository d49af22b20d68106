import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { eventToJson } from '../../src/contract/json.js';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { createLogger } from '../../src/log.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { applyEvents } from '../../src/state/decide.js';
import { appEvent, produceStream, type OutMessage } from '../support/chaos-traffic.js';
import { readTopic } from '../support/topic-reader.js';
import { dropNamespace, highWatermarks, testConfig, waitForLanes } from '../support/engine-harness.js';
import { createTopic, deleteTopics, uniqueName } from '../support/kafka-admin.js';
import { partitionOf } from '../support/reference-log.js';
import { webhookSecret } from '../support/touch-harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

/**
 * Personal data canaries (issue 6 item 9). Canary phone numbers, names and account numbers go
 * into events everywhere the contract lets them (props, the traits kept from props, event names
 * and channels where their character set allows, device ids, a user-agent-like prop) and into
 * malformed events of every kind that are dead-lettered, over Kafka and over HTTP ingest. The
 * engine runs in this process with a debug-level logger writing to a captured stream, and this
 * process' JavaScript writes to stdout/stderr are captured too (anything librdkafka writes
 * natively to the file descriptors is not); one journey
 * sends a welcome whose template names one attribute (`segment`).
 *
 * Then no canary may appear in: the log lines, `/metrics`, the dead-letter reason headers, the
 * HTTP ingest's error messages, or BullMQ's keys (job data carries only `segment`). Positive
 * controls prove the canaries did travel: they are in the user states' traits in Redis (that is
 * the store's job) and in the dead letters' values — the DLQ keeps the original bytes by design
 * (DESIGN §2.1, so an operator can replay them), which makes the DLQ topic itself personal data
 * to be access-controlled like the events topic; only its reasons must be clean.
 */
const PHONE = '13800138000';
const NAME = 'Zhang Wei';
const NAME_ID = 'ZhangWeiCanary'; // the name where only [A-Za-z0-9_.:-] is allowed
const ACCOUNT = '6222021234567890123';
const UA = `Mozilla/5.0 (Linux; Android 14; ${NAME_ID} ${PHONE})`;
const CANARIES = [PHONE, NAME, NAME_ID, ACCOUNT, 'Zhang', '6222021234'];
const USERS = 12;

const topic = uniqueName('pii');
const namespace = `pii${randomBytes(4).toString('hex')}`;
const queue = `pii-touches-${randomBytes(3).toString('hex')}`;
const secret = webhookSecret();

function yaml(groupId: string, url: string): string {
  return `
kafka: { brokers: [${inject('kafkaBrokers')}], topic: ${topic}, dlqTopic: ${topic}.dlq, groupId: ${groupId} }
redis: { url: ${inject('redisUrl')}, keyPrefix: ${namespace} }
http: { port: 0 }
time: { reportingTimeZone: UTC, maxTriggerAge: 1h }
activity:
  breakdowns:
    - { name: chan, by: channel }
    - { name: seg, by: trait, trait: segment }
behaviour:
  traits: [segment, full_name, phone, account]
  counters:
    - { name: calls, match: { name: call_${PHONE} }, keep: 3, within: 24h }
touches:
  queue: ${queue}
  channels:
    hook: { adapter: webhook, url: "${url}", secret: "${secret}", allowPrivateAddresses: true, timeout: 2s }
journeys:
  - id: welcome
    trigger: { type: event, match: { name: register } }
    reEntry: never
    channel: hook
    template: welcome
    attributes: [segment]
    useGlobalHoldout: false
`;
}

/** The real step, except that it throws an error quoting personal data on one kind of event. */
const poisonedDecide: typeof applyEvents = (events, ...rest) => {
  for (const e of events) if (e.name === 'poison') throw new TypeError(`cannot handle ${e.props.phone ?? ''} of ${e.props.full_name ?? ''}`);
  return applyEvents(events, ...rest);
};

let n = 0;
const canaryProps = (): Record<string, string> => ({ segment: 'gold', full_name: NAME, phone: `+86${PHONE}`, account: ACCOUNT, user_agent: UA });
function ev(userId: string, over: Partial<AppEvent> = {}): AppEvent {
  return appEvent({ eventId: `pii-${n++}`, userId, timeMs: Date.now(), tz: 'UTC', deviceId: `dev-${ACCOUNT}`, props: canaryProps(), ...over });
}

/** Events that must be refused, each carrying canaries where the rule it breaks looks. */
function malformedEvents(userId: string): AppEvent[] {
  return [
    ev(userId, { name: NAME }), // a space: NAME_BAD_CHARS
    ev(userId, { channel: NAME }),
    ev(userId, { tz: `Asia/${NAME_ID}${PHONE}` }),
    ev(userId, { props: { ...canaryProps(), note: `${NAME} ${PHONE} ${ACCOUNT} `.repeat(30) } }),
    ev(userId, { props: { ...canaryProps(), [`phone_${PHONE}_${NAME_ID}_${ACCOUNT}_${ACCOUNT}`]: 'x' } }),
    ev(userId, { deviceId: `${UA} ${ACCOUNT}`.repeat(4) }),
    ev(`${ACCOUNT}-${PHONE}-`.repeat(5), {}), // user id over 128 characters
    ev(userId, { name: `${NAME_ID}_${PHONE}_${ACCOUNT}_${NAME_ID}_${PHONE}_${ACCOUNT}` }), // name over 64
    ev(userId, { timeMs: Math.floor(Date.now() / 1000) }),
    ev(userId, { value: Number.NaN }),
    ev(userId, { props: { ...canaryProps(), blob: `${NAME} ${PHONE} ${ACCOUNT}`.repeat(3_000) } }), // over 64 KiB
  ];
}

const findCanaries = (text: string): string[] => CANARIES.filter((c) => text.includes(c));

describe('personal data canaries', () => {
  const brokers = inject('kafkaBrokers');
  let redis: Redis;
  let receiver: WebhookReceiver;
  let engine: Engine;
  const logLines: string[] = [];
  const processOutput: string[] = [];
  const restore: Array<() => void> = [];
  let sent: OutMessage[] = [];
  let ingestResponses: string[] = [];
  let metricsText = '';

  beforeAll(async () => {
    redis = new Redis(inject('redisUrl'));
    receiver = await startWebhookReceiver(secret);
    await createTopic(brokers, topic, 2);
    await createTopic(brokers, `${topic}.dlq`, 1);
    // Everything this process writes, while the engine runs in it.
    for (const stream of [process.stdout, process.stderr]) {
      const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
      stream.write = ((chunk: unknown, ...rest: unknown[]) => {
        processOutput.push(String(chunk));
        return write(chunk, ...rest);
      }) as typeof stream.write;
      restore.push(() => {
        stream.write = write as typeof stream.write;
      });
    }
    const logs = new PassThrough();
    logs.on('data', (chunk: Buffer) => logLines.push(chunk.toString('utf8')));
    const { config } = testConfig(yaml(uniqueName('pii-group'), `${receiver.url}/hooks`));
    engine = new Engine({
      config,
      spec: compileStateSpec(config),
      logger: createLogger({ level: 'debug', destination: logs, name: 'engine' }),
      registry: createMetricsRegistry(),
      decide: poisonedDecide,
      stateGaugesIntervalMs: 300,
      lagIntervalMs: 300,
    });
    await engine.start();
  }, 120_000);

  afterAll(async () => {
    await engine?.stop();
    for (const r of restore) r();
    await receiver?.close();
    await dropNamespace(redis, namespace);
    for (const pattern of [`bull:${queue}:*`, `${namespace}:touches:*`, `{${namespace}:touches:*`]) {
      const keys = await redis.keys(pattern);
      if (keys.length) await redis.unlink(...keys);
    }
    await redis.quit();
    await deleteTopics(brokers, [topic, `${topic}.dlq`]);
  });

  it('runs canary-laden traffic, valid and malformed, through Kafka and HTTP ingest', async () => {
    const users = Array.from({ length: USERS }, (_, i) => `pii-user-${i}`);
    const valid = users.flatMap((u, i) => [
      ev(u, { name: 'profile_update', channel: i % 2 === 0 ? NAME_ID : 'app' }),
      ev(u, { name: 'register' }),
      ev(u, { name: `call_${PHONE}`, channel: `${NAME_ID}${i}` }),
    ]);
    const bad = users.slice(0, 3).flatMap(malformedEvents);
    const poison = users.slice(0, 2).map((u) => ev(u, { name: 'poison' }));
    const encoded = (e: AppEvent): OutMessage => ({ partition: partitionOf(e.userId, 2), key: e.userId, value: encodeEvent(e) });
    sent = [...valid, ...bad, ...poison].map(encoded);
    // A valid event cut short inside its props (a canary in the cut field).
    const full = encodeEvent(ev(users[0]!, { name: 'cut' }));
    sent.push({ partition: 0, key: users[0]!, value: full.subarray(0, full.length - 10) });
    await produceStream(brokers, topic, sent);

    // The same refusals through HTTP ingest, plus bodies that are not events at all.
    const post = async (body: string) => {
      const res = await fetch(`${engine.opsUrl}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      return `${res.status} ${await res.text()}`;
    };
    ingestResponses = [
      // JSON has no NaN (it would arrive as null = 0, a valid value): those stay Kafka-only.
      await post(JSON.stringify(bad.filter((e) => !Number.isNaN(e.value)).map(eventToJson))),
      await post(JSON.stringify([{ ...eventToJson(ev(users[0]!)), [`${NAME_ID}_${PHONE}`]: ACCOUNT }, { ...eventToJson(ev(users[0]!)), props: { nested: { name: NAME, phone: PHONE } } }])),
      await post(`[{"user_id": "${NAME}", "phone": "${PHONE}"`),
      await post(JSON.stringify({ user_id: NAME, account: ACCOUNT })),
      await post(JSON.stringify([{ ...eventToJson(ev(users[0]!)), time_ms: `${PHONE}-${ACCOUNT}` }])),
    ];
    for (const r of ingestResponses) expect(r).toMatch(/^(202|400) /);
    // Every event of every request is refused: nothing reaches the topic by HTTP.
    expect(ingestResponses[0]).toContain('"accepted":0,"rejected":30');

    // Query routes with canaries in the path and parameters: the user view answers (the caller
    // asked for that user), but nothing of the request may reach a log line.
    for (const path of [`/v1/users/${encodeURIComponent(`${NAME} ${PHONE}`)}`, `/v1/users/pii-user-0`, `/v1/active?metric=${PHONE}&window=dau&day=2026-01-01`, `/v1/active?metric=active&window=dau&day=2026-01-01&by=${NAME_ID}`, `/v1/journeys/${NAME_ID}${PHONE}/stats`, `/v1/${ACCOUNT}`]) {
      await (await fetch(`${engine.opsUrl}${path}`)).text();
    }

    await waitForLanes(redis, namespace, topic, await highWatermarks(brokers, topic), 120_000);
    await receiver.waitFor(USERS, 60_000);
    await engine.idle();
    // The gauges are polled from Redis every 300 ms here: wait until they have data.
    const deadline = Date.now() + 30_000;
    while (!/nudge_journey_triggered_total\{[^}]*journey="welcome"[^}]*\} [1-9]/.test(metricsText)) {
      if (Date.now() > deadline) throw new Error('journey gauges had no data within 30 s');
      await new Promise((r) => setTimeout(r, 200));
      metricsText = await (await fetch(`${engine.opsUrl}/metrics`)).text();
    }
  }, 300_000);

  it('the canaries did travel: they are in the stored traits and in the dead letters\' original bytes', async () => {
    const state = await (await fetch(`${engine.opsUrl}/v1/users/pii-user-1`)).text();
    expect(findCanaries(state)).toEqual(expect.arrayContaining([PHONE, NAME, ACCOUNT]));
    const letters = await readTopic(brokers, `${topic}.dlq`, { count: 3 * 11 + 2 + 1, timeoutMs: 60_000 });
    expect(letters.filter((l) => findCanaries(l.value.toString('latin1')).length > 0).length).toBe(letters.length);
  });

  it('no canary in the dead-letter reasons (the values keep the original bytes by design)', async () => {
    const total = [...(await highWatermarks(brokers, `${topic}.dlq`)).values()].reduce((a, b) => a + b, 0);
    const letters = await readTopic(brokers, `${topic}.dlq`, { count: total, timeoutMs: 60_000 });
    expect(total).toBe(3 * 11 + 2 + 1);
    const codes = new Set(letters.map((l) => l.headers['nudge-error-code']));
    expect(codes).toEqual(new Set(['NUDGE_EVENT_NAME_BAD_CHARS', 'NUDGE_EVENT_CHANNEL_BAD_CHARS', 'NUDGE_EVENT_BAD_TZ', 'NUDGE_EVENT_PROP_VALUE_TOO_LONG', 'NUDGE_EVENT_PROP_KEY_TOO_LONG', 'NUDGE_EVENT_DEVICE_ID_TOO_LONG', 'NUDGE_EVENT_USER_ID_TOO_LONG', 'NUDGE_EVENT_NAME_TOO_LONG', 'NUDGE_EVENT_TIME_OUT_OF_RANGE', 'NUDGE_EVENT_VALUE_NOT_FINITE', 'NUDGE_EVENT_TOO_LARGE', 'NUDGE_EVENT_POISON', 'NUDGE_EVENT_UNDECODABLE']));
    const leaks = letters.flatMap((l) => {
      const found = findCanaries(`${l.headers['nudge-error'] ?? ''} ${l.headers['nudge-error-code'] ?? ''}`);
      return found.length > 0 ? [`${l.headers['nudge-error-code']}: ${found.join(', ')}`] : [];
    });
    expect(leaks).toEqual([]);
  });

  it('no canary in the HTTP ingest error messages', () => {
    expect(ingestResponses.flatMap((r, i) => findCanaries(r).map((c) => `response ${i}: ${c}`))).toEqual([]);
  });

  it('no canary in /metrics', () => {
    expect(metricsText.length).toBeGreaterThan(1_000);
    const leaks = metricsText.split('\n').filter((l) => findCanaries(l).length > 0);
    expect(leaks).toEqual([]);
  });

  it('BullMQ job data carries only the attribute the template names, and no canary anywhere in the queue', async () => {
    const keys = await redis.keys(`bull:${queue}:*`);
    const jobs: Array<Record<string, unknown>> = [];
    const leaks: string[] = [];
    for (const key of keys) {
      const type = await redis.type(key);
      let dump: string;
      if (type === 'hash') {
        const h = await redis.hgetall(key);
        if (h.data !== undefined && h.name !== undefined) jobs.push(JSON.parse(h.data) as Record<string, unknown>);
        dump = JSON.stringify(h);
      } else if (type === 'string') dump = (await redis.get(key)) ?? '';
      else if (type === 'list') dump = JSON.stringify(await redis.lrange(key, 0, -1));
      else if (type === 'zset') dump = JSON.stringify(await redis.zrange(key, '0', '-1'));
      else if (type === 'set') dump = JSON.stringify(await redis.smembers(key));
      else if (type === 'stream') dump = JSON.stringify(await redis.xrange(key, '-', '+'));
      else dump = '';
      for (const c of findCanaries(dump)) leaks.push(`${key}: ${c}`);
    }
    expect(leaks).toEqual([]);
    expect(jobs).toHaveLength(USERS);
    for (const job of jobs) {
      expect(job.journeyId).toBe('welcome');
      expect(job.attributes).toEqual({ segment: 'gold' });
    }
    // What reached the provider is the job: same rule.
    expect(receiver.requests.flatMap((r) => findCanaries(r.body))).toEqual([]);
  });

  it('no canary in the engine\'s debug logs or anything this process wrote, through a graceful stop', async () => {
    await engine.stop();
    const all = logLines.join('');
    expect(all.split('\n').filter((l) => l.includes('"level":"debug"') || l.includes('"level":"info"')).length).toBeGreaterThan(3);
    const leaks = [...all.split('\n'), ...processOutput].filter((l) => findCanaries(l).length > 0);
    console.log(`pii-canaries: searched ${all.split('\n').length} engine log lines (debug level) and ${processOutput.length} writes to stdout/stderr`);
    expect(leaks.slice(0, 5)).toEqual([]);
  });
});
