import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { startKafkaBroker, type KafkaBrokerHandle } from '../../scripts/services/kafka-broker.js';
import { createTopic, deleteTopics, uniqueName } from '../support/kafka-admin.js';
import { dropNamespace, highWatermarks, testConfig, waitForLanes } from '../support/engine-harness.js';
import { referenceCounter, referenceStage, referenceStreak, runReference, type RefEvent, type RefSpec } from '../support/reference-model.js';

/**
 * HTTP ingest (DESIGN §2.1, issue 3 "Prove it"): `POST /v1/events` on a running engine's ops
 * API produces the valid events of a JSON array to the topic and answers 202 with what it
 * accepted and, per refused event, its index and code; the engine then applies them and
 * `GET /v1/users/{id}` shows the effect, as the reference model computes it. Oversized requests
 * get 413 and produce nothing; a broker that is down gets 503, and the retry it asks for is safe.
 */
const DAY = 86_400_000;
const ZONE = 'Asia/Shanghai';

const refSpec: RefSpec = {
  reportingTimeZone: ZONE,
  allowedLatenessMs: 2 * 3_600_000,
  maxFutureSkewMs: 5 * 60_000,
  metrics: [{ name: 'active', events: null }],
  newForMs: 7 * DAY,
  dormantAfterMs: 14 * DAY,
  churnedAfterMs: 30 * DAY,
  reactivatedForMs: 7 * DAY,
  counters: [{ name: 'loan_views', eventName: 'page_view', props: { page: 'loan_detail' }, keep: 3, withinMs: DAY }],
  streaks: [{ name: 'checkin', eventName: 'checkin' }],
  recentIds: 32,
};

function yaml(brokers: string, topic: string, namespace: string): string {
  return `
kafka:
  brokers: [${brokers}]
  topic: ${topic}
  dlqTopic: ${topic}.dlq
  groupId: ${uniqueName('ingest-group')}
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
behaviour:
  counters:
    - name: loan_views
      match: { name: page_view, props: { page: loan_detail } }
      keep: 3
      within: 24h
  streaks:
    - name: checkin
      match: { name: checkin }
`;
}

interface UserBody {
  firstSeen: string;
  lastSeen: string;
  stage: string;
  activeDays: Record<string, string[]>;
  streaks: Record<string, { best: number }>;
  counters: Record<string, { times: string[] }>;
}

/** What GET /v1/users/{id} must show for `userId` once `events` are applied, per the reference. */
function expectedView(events: RefEvent[], userId: string, now: number) {
  const ref = runReference(events.map((event) => ({ partition: 0, event })), refSpec, now);
  const u = ref.users.get(userId);
  if (u === undefined) throw new Error(`reference has no user ${userId}`);
  return {
    firstSeen: new Date(u.firstSeen).toISOString(),
    lastSeen: new Date(u.lastSeen).toISOString(),
    stage: referenceStage(u, now, refSpec),
    activeDays: [...(u.days.get('active') ?? [])].sort(),
    checkinBest: referenceStreak(u.streakDays.get('checkin') ?? []).best,
    loanViews: referenceCounter(u.counterTimes.get('loan_views') ?? [], 3).map((t) => new Date(t).toISOString()),
  };
}

function viewOf(body: UserBody): ReturnType<typeof expectedView> {
  return {
    firstSeen: body.firstSeen,
    lastSeen: body.lastSeen,
    stage: body.stage,
    activeDays: body.activeDays.active ?? [],
    checkinBest: body.streaks.checkin?.best ?? 0,
    loanViews: body.counters.loan_views?.times ?? [],
  };
}

/**
 * Polls GET /v1/users/{id} until it shows `want` (the engine applies events asynchronously and
 * in another lane per partition; nothing signals "applied" to an HTTP client), then returns
 * what it last saw, so a deadline failure shows the difference.
 */
async function pollUser(opsUrl: string, userId: string, want: ReturnType<typeof expectedView>, timeoutMs: number): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = 'never answered 200';
  while (Date.now() < deadline) {
    const res = await fetch(`${opsUrl}/v1/users/${encodeURIComponent(userId)}`);
    if (res.status === 200) {
      last = viewOf((await res.json()) as UserBody);
      if (JSON.stringify(last) === JSON.stringify(want)) return last;
    } else await res.body?.cancel();
    await new Promise((r) => setTimeout(r, 50));
  }
  return last;
}

async function post(opsUrl: string, body: string | ReadableStream<Uint8Array>, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const res = await fetch(`${opsUrl}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
    ...(typeof body === 'string' ? {} : { duplex: 'half' }),
  } as RequestInit);
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

/** A raw client socket that reads HTTP/1.1 responses (Content-Length or chunked bodies) in order. */
async function rawConnection(port: number): Promise<{
  socket: Socket;
  nextResponse(timeoutMs: number): Promise<{ status: number; head: string; body: string }>;
  closed(timeoutMs: number): Promise<boolean>;
}> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let buffer = '';
  let ended = false;
  const changed = new EventEmitter();
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    buffer += d;
    changed.emit('change');
  });
  socket.on('error', (err) => changed.emit('change', err));
  socket.on('close', () => {
    ended = true;
    changed.emit('change');
  });
  const until = async <T>(take: () => T | null, timeoutMs: number, what: string): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = take();
      if (got !== null) return got;
      if (ended) throw new Error(`connection closed before ${what} (read so far: ${JSON.stringify(buffer.slice(0, 200))})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms`);
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), left);
      await once(changed, 'change', { signal: abort.signal }).catch(() => undefined);
      clearTimeout(timer);
    }
  };
  const parse = (): { status: number; head: string; body: string } | null => {
    const end = buffer.indexOf('\r\n\r\n');
    if (end < 0) return null;
    const head = buffer.slice(0, end);
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
    let rest = buffer.slice(end + 4);
    const length = /^content-length: *(\d+)/im.exec(head);
    let body = '';
    if (length) {
      if (rest.length < Number(length[1])) return null;
      body = rest.slice(0, Number(length[1]));
      rest = rest.slice(Number(length[1]));
    } else if (/^transfer-encoding: *chunked/im.test(head)) {
      for (;;) {
        const nl = rest.indexOf('\r\n');
        if (nl < 0) return null;
        const size = parseInt(rest.slice(0, nl), 16);
        if (rest.length < nl + 2 + size + 2) return null;
        body += rest.slice(nl + 2, nl + 2 + size);
        rest = rest.slice(nl + 2 + size + 2);
        if (size === 0) break;
      }
    }
    buffer = rest;
    return { status, head, body };
  };
  return {
    socket,
    nextResponse: (timeoutMs) => until(parse, timeoutMs, 'response'),
    closed: (timeoutMs) => until(() => (ended ? true : null), timeoutMs, 'close').catch(() => false),
  };
}

const sum = (m: Map<number, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

describe('POST /v1/events on a running engine', () => {
  const brokers = inject('kafkaBrokers');
  const topic = uniqueName('ingest-events');
  const namespace = `h${randomBytes(4).toString('hex')}`;
  let redis: Redis;
  let engine: Engine;
  let opsUrl: string;
  const now = Date.now();
  const uA = `ana-${randomBytes(3).toString('hex')}`;
  const uB = `ben-${randomBytes(3).toString('hex')}`;

  beforeAll(async () => {
    redis = new Redis(inject('redisUrl'));
    await createTopic(brokers, topic, 2);
    await createTopic(brokers, `${topic}.dlq`, 1);
    const { config } = testConfig(yaml(brokers, topic, namespace));
    engine = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry() });
    await engine.start();
    opsUrl = engine.opsUrl as string;
  }, 120_000);

  afterAll(async () => {
    await engine?.stop();
    await dropNamespace(redis, namespace);
    await redis.quit();
    await deleteTopics(brokers, [topic, `${topic}.dlq`]);
  });

  it('accepts the valid events of a mixed array, says why each other one was refused, and applies them', async () => {
    const t = (minutesAgo: number): number => now - minutesAgo * 60_000;
    const items: unknown[] = [
      { event_id: `${uA}-1`, user_id: uA, name: 'page_view', time_ms: t(50), channel: 'app', tz: 'Asia/Shanghai', props: { page: 'loan_detail' } },
      42,
      // camelCase names and an ISO-8601 time are accepted too.
      { eventId: `${uA}-2`, userId: uA, name: 'page_view', timeMs: new Date(t(30)).toISOString(), props: { page: 'loan_detail' } },
      { event_id: `${uA}-3`, user_id: uA, name: 'login', time_ms: t(20), deviceID: 'd-1' },
      { event_id: 'ghost-1', user_id: '', name: 'login', time_ms: t(20) },
      { event_id: `${uB}-1`, user_id: uB, name: 'checkin', time_ms: String(t(10)), value: '12.5' },
      { event_id: 'ghost-2', user_id: 'ghost', name: 'login', time_ms: t(10), tz: 'Mars/Olympus' },
      // A producer's retry of the first event: valid, so accepted; the engine applies it once.
      { event_id: `${uA}-1`, user_id: uA, name: 'page_view', time_ms: t(50), channel: 'app', tz: 'Asia/Shanghai', props: { page: 'loan_detail' } },
      { event_id: 'ghost-3', user_id: 'ghost', name: 'log in', time_ms: t(5) },
    ];
    const res = await post(opsUrl, JSON.stringify(items));
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ accepted: 4, rejected: 5 });
    const errors = res.body.errors as Array<{ index: number; code: string; message: string }>;
    expect(errors.map(({ index, code }) => ({ index, code }))).toEqual([
      { index: 1, code: 'NUDGE_EVENT_BAD_JSON' },
      { index: 3, code: 'NUDGE_EVENT_BAD_JSON' },
      { index: 4, code: 'NUDGE_EVENT_MISSING_USER_ID' },
      { index: 6, code: 'NUDGE_EVENT_BAD_TZ' },
      { index: 8, code: 'NUDGE_EVENT_NAME_BAD_CHARS' },
    ]);
    expect(errors[1]?.message).toContain('deviceID');
    for (const e of errors) expect(e.message.length).toBeGreaterThan(20);
    // 202 comes after the broker's acknowledgement: the accepted events, and only they, are there.
    expect(sum(await highWatermarks(brokers, topic))).toBe(4);

    const applied: RefEvent[] = [
      { eventId: `${uA}-1`, userId: uA, name: 'page_view', timeMs: t(50), props: { page: 'loan_detail' }, value: 0, tz: 'Asia/Shanghai', channel: 'app' },
      { eventId: `${uA}-2`, userId: uA, name: 'page_view', timeMs: t(30), props: { page: 'loan_detail' }, value: 0, tz: '', channel: '' },
      { eventId: `${uB}-1`, userId: uB, name: 'checkin', timeMs: t(10), props: {}, value: 12.5, tz: '', channel: '' },
      { eventId: `${uA}-1`, userId: uA, name: 'page_view', timeMs: t(50), props: { page: 'loan_detail' }, value: 0, tz: 'Asia/Shanghai', channel: 'app' },
    ];
    for (const userId of [uA, uB]) {
      const want = expectedView(applied, userId, Date.now());
      expect(await pollUser(opsUrl, userId, want, 30_000)).toEqual(want);
    }
    expect(expectedView(applied, uA, now).loanViews).toHaveLength(2);
    await waitForLanes(redis, namespace, topic, await highWatermarks(brokers, topic), 30_000);
    expect((await engine.metrics.eventsDuplicate.get()).values[0]?.value).toBe(1);
    // Refused events never reached the topic, so their users do not exist.
    const ghost = await fetch(`${opsUrl}/v1/users/ghost`);
    expect(ghost.status).toBe(404);
    await ghost.body?.cancel();
  });

  it('answers 413 for a declared body over 1 MiB and for more than 1,000 events, producing nothing', async () => {
    const before = sum(await highWatermarks(brokers, topic));
    const event = (i: number) => ({ event_id: `big-${i}`, user_id: 'big', name: 'login', time_ms: now });
    const declared = await post(opsUrl, `[${JSON.stringify(event(0))}${' '.repeat(1_100_000)}]`);
    expect(declared.status).toBe(413);
    expect(declared.body.error).toContain('1048576 bytes');

    const many = await post(opsUrl, JSON.stringify(Array.from({ length: 1_001 }, (_, i) => event(i))));
    expect(many.status).toBe(413);
    expect(many.body.error).toBe('1001 events in one request; the limit is 1000');
    expect(sum(await highWatermarks(brokers, topic))).toBe(before);

    // Exactly at the limit is fine (and produces all of them).
    const atLimit = await post(opsUrl, JSON.stringify(Array.from({ length: 1_000 }, (_, i) => event(i))));
    expect(atLimit.status).toBe(202);
    expect(atLimit.body).toMatchObject({ accepted: 1_000, rejected: 0 });
    expect(sum(await highWatermarks(brokers, topic))).toBe(before + 1_000);
  });

  it('answers 400 for a body that is not a JSON array', async () => {
    const notJson = await post(opsUrl, '[{"event_id": ');
    expect(notJson.status).toBe(400);
    expect(notJson.body.error).toContain('not valid JSON');
    const notArray = await post(opsUrl, JSON.stringify({ event_id: 'x' }));
    expect(notArray.status).toBe(400);
    expect(notArray.body.error).toContain('JSON array');
  });

  it('answers 413 to a streamed (chunked) body over 1 MiB and keeps the connection usable, or closes it', async () => {
    // A raw HTTP/1.1 connection, as a keep-alive client (undici, curl, a load balancer) holds
    // one: after the 413 the server must either serve the next request on it or close it, not
    // leave it half-read, where the next request on it waits and then dies with ECONNRESET.
    const { port } = new URL(opsUrl);
    const conn = await rawConnection(Number(port));
    try {
      const chunk = ' '.repeat(64 * 1024);
      let request = 'POST /v1/events HTTP/1.1\r\nHost: nudge\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n';
      for (let i = 0; i < 20; i++) request += `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
      request += '2\r\n[]\r\n0\r\n\r\n';
      conn.socket.write(request);
      const first = await conn.nextResponse(10_000);
      expect(first.status).toBe(413);
      expect(first.body).toContain('1048576 bytes');
      let outcome: string;
      if (/^connection: *close/im.test(first.head)) {
        outcome = (await conn.closed(3_000)) ? 'closed after the 413' : 'said "close" but stayed open';
      } else {
        conn.socket.write('POST /v1/events HTTP/1.1\r\nHost: nudge\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]');
        const second = await conn.nextResponse(3_000).catch((err: Error) => ({ status: 0, head: '', body: err.message }));
        outcome = second.status === 202 ? 'served the next request' : `kept alive, next request got ${second.status === 0 ? second.body : second.status}`;
      }
      expect(['closed after the 413', 'served the next request'], `after the 413 the server ${outcome}`).toContain(outcome);
    } finally {
      conn.socket.destroy();
    }
  });
});

describe('POST /v1/events when the broker is down', () => {
  // A broker of this test's own: stopping the shared one would break every other test file.
  let broker: KafkaBrokerHandle;
  let dataDir: string;
  let redis: Redis;
  let engine: Engine;
  const topic = uniqueName('ingest-down');
  const namespace = `d${randomBytes(4).toString('hex')}`;
  const user = `dee-${randomBytes(3).toString('hex')}`;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'nudge-ingest-kafka-'));
    broker = await startKafkaBroker({ dataDir });
    redis = new Redis(inject('redisUrl'));
    await createTopic(broker.brokers, topic, 1);
    await createTopic(broker.brokers, `${topic}.dlq`, 1);
    const { config } = testConfig(yaml(broker.brokers, topic, namespace));
    engine = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry: createMetricsRegistry() });
    await engine.start();
  }, 180_000);

  afterAll(async () => {
    await engine?.stop();
    await broker?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (redis) {
      await dropNamespace(redis, namespace);
      await redis.quit();
    }
  }, 120_000);

  it('answers 503 with Retry-After while the broker is down, and the retry it asks for counts the event once', async () => {
    const opsUrl = engine.opsUrl as string;
    const time = Date.now() - 60_000;
    const body = JSON.stringify([{ event_id: `${user}-1`, user_id: user, name: 'page_view', time_ms: time, props: { page: 'loan_detail' } }]);
    await broker.stop(); // SIGTERM; the data dir is ours, so it stays for the restart
    const started = Date.now();
    const down = await post(opsUrl, body);
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toBe('5');
    expect(down.body.error).toContain('Retry the whole request');
    // The route waits 10 s for the acknowledgement; it must not hang on a dead broker.
    expect(Date.now() - started).toBeLessThan(20_000);

    const again = await startKafkaBroker({ dataDir, port: broker.port, controllerPort: broker.controllerPort });
    broker = again;
    // The producer reconnects with its own backoff; a client retries until the answer is 202.
    const deadline = Date.now() + 60_000;
    let retry = await post(opsUrl, body);
    while (retry.status === 503 && Date.now() < deadline) retry = await post(opsUrl, body);
    expect(retry.status).toBe(202);
    expect(retry.body).toMatchObject({ accepted: 1, rejected: 0 });

    // The first attempt may still have been delivered once the broker was back (librdkafka kept
    // it queued): the topic then holds the event twice, and the engine applies it once.
    const copies = sum(await highWatermarks(broker.brokers, topic));
    expect([1, 2]).toContain(copies);
    const refEvent: RefEvent = { eventId: `${user}-1`, userId: user, name: 'page_view', timeMs: time, props: { page: 'loan_detail' }, value: 0, tz: '', channel: '' };
    const want = expectedView(Array.from({ length: copies }, () => refEvent), user, Date.now());
    expect(await pollUser(opsUrl, user, want, 60_000)).toEqual(want);
    expect(want.loanViews).toHaveLength(1);
    await waitForLanes(redis, namespace, topic, await highWatermarks(broker.brokers, topic), 30_000);
    expect((await engine.metrics.eventsDuplicate.get()).values[0]?.value ?? 0).toBe(copies - 1);
  }, 150_000);
});
