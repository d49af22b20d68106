import { randomBytes } from 'node:crypto';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { exitOf, startRedisServer, type ProcessExit, type RedisServerHandle } from '../../src/dev/redis-server.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { StateQueries } from '../../src/state/queries.js';
import { ioredisOptions } from '../../src/state/redis-options.js';
import { dropNamespace, highWatermarks, produceLog, testConfig, waitForLanes } from '../support/engine-harness.js';
import { metricValue, readMetric, startEngineProcess, type EngineProcess } from '../support/engine-process.js';
import { startKafkaBroker, type KafkaBrokerHandle } from '../../scripts/services/kafka-broker.js';
import { refTouchId } from '../support/journey-reference.js';
import { verifyStandardWebhook } from '../support/journey-scenario.js';
import { createTopic, deleteTopics, uniqueName } from '../support/kafka-admin.js';
import { countMismatches, userMismatches } from '../support/reference-compare.js';
import { buildReferenceLog, partitionOf, type LogMessage } from '../support/reference-log.js';
import { runReference, type RefResult } from '../support/reference-model.js';
import { DAY, STATE_REF_SPEC, ZONE, stateYaml } from '../support/state-config.js';
import { webhookSecret } from '../support/touch-harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

/**
 * Issue 6, item 10 (access), against real parts: a private redis-server with the ACL user that
 * docs/security.md tells operators to create (the line is read from the doc, so the doc cannot
 * drift from what was tested), the shared real Kafka broker, an engine process (engine, relay,
 * delivery workers) and a separate `nudge worker` process, both logged in as that user, and a
 * signed webhook receiver on loopback. It proves:
 * - the engine works under the least-privilege user: its state equals the brute-force
 *   reference, every touch of a journey is delivered exactly once, and `ACL LOG` shows that
 *   Redis refused nothing Nudge or BullMQ asked for — only this test's deliberate probes;
 * - the user cannot touch keys outside its patterns nor run FLUSHALL, KEYS, CONFIG, ACL,
 *   SCRIPT FLUSH (NOPERM);
 * - the ops API of both processes needs the bearer token on /v1/* and on /metrics (401
 *   without, with a wrong one, with another scheme; 200 with it), /healthz stays open;
 * - neither the token nor the Redis password appears in either process's output (the worker
 *   logs at debug level), not even when a login fails;
 * - over TLS (a private broker with SSL and SASL_SSL listeners and a certificate from a CA made
 *   here with openssl), an engine given the right CA (and SCRAM-SHA-512 login) consumes, and one
 *   given another CA, or a wrong password, refuses to start with an error naming the setting to
 *   check, having consumed nothing (fails closed, no plaintext fallback).
 */
const BIN = fileURLToPath(new URL('../../bin/nudge.js', import.meta.url));
const DOC = fileURLToPath(new URL('../../docs/security.md', import.meta.url));
const PARTITIONS = 2;
// The engine's fixed wall clock: the real time at the start, so the worker (real clock) sends
// the touches at once, while the engine's decisions stay comparable with the reference.
const NOW = Date.now();
const START = NOW - 12 * DAY;
const JOURNEY_USERS = 40;

const refSpec = STATE_REF_SPEC;

const suffix = randomBytes(4).toString('hex');
const namespace = `acl${suffix}`;
const queue = `touches-${suffix}`;
const topic = uniqueName('access');
const user = 'nudge-engine';
const password = randomBytes(24).toString('base64url');
const token = randomBytes(32).toString('base64url');
const secret = webhookSecret();

/**
 * The ACL SETUSER line of docs/security.md, for this test's key prefix and queue: the doc's
 * defaults `nudge` / `nudge-touches` and its placeholder password are swapped word by word.
 */
function aclFromDoc(): string[] {
  const line = readFileSync(DOC, 'utf8').split('\n').find((l) => l.startsWith('ACL SETUSER nudge-engine '));
  if (line === undefined) throw new Error(`docs/security.md has no line starting "ACL SETUSER nudge-engine": restore it (this test runs it)`);
  const swap: Record<string, string> = {
    '>CHANGE-ME': `>${password}`,
    '~{nudge:*': `~{${namespace}:*`,
    '~nudge:*': `~${namespace}:*`,
    '~bull:nudge-touches:*': `~bull:${queue}:*`,
  };
  const words = line.trim().split(/\s+/).slice(3);
  for (const key of Object.keys(swap)) if (!words.includes(key)) throw new Error(`the doc's ACL line lacks ${key}`);
  return words.map((w) => swap[w] ?? w);
}

function yaml(redisUrl: string, groupId: string, hookUrl: string): string {
  return `
kafka: { brokers: [${inject('kafkaBrokers')}], topic: ${topic}, dlqTopic: ${topic}.dlq, groupId: ${groupId} }
redis: { url: "${redisUrl}", keyPrefix: ${namespace}, username: ${user}, password: "${password}" }
http: { port: 0, token: "${token}", metricsRequireToken: true }
${stateYaml({ maxTriggerAge: '1h', sweepInterval: null }).trim()}
touches:
  queue: ${queue}
  channels:
    hook: { adapter: webhook, url: "${hookUrl}", secret: "${secret}", allowPrivateAddresses: true, timeout: 5s }
journeys:
  - id: kyc-welcome
    trigger: { type: event, match: { name: kyc_passed } }
    reEntry: never
    channel: hook
    template: kyc_welcome
    useGlobalHoldout: false
`;
}

interface WorkerProcess {
  opsUrl: string;
  output(): string;
  exited: Promise<ProcessExit>;
}

/** `nudge worker` as an operator runs it: the secrets from the environment, debug logging. */
function spawnWorker(configFile: string, overrides: Record<string, string> = {}): { child: ChildProcess; output(): string; exited: Promise<ProcessExit> } {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('NUDGE_') && k !== 'REDIS_URL') env[k] = v;
  Object.assign(env, { NUDGE_LOG_LEVEL: 'debug', NUDGE_HTTP_TOKEN: token, NUDGE_REDIS_PASSWORD: password }, overrides);
  const child = spawn(process.execPath, [BIN, 'worker', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', (c: string) => (out += c));
  }
  return { child, output: () => out, exited: exitOf(child) };
}

async function startWorker(configFile: string): Promise<WorkerProcess> {
  const { child, output, exited } = spawnWorker(configFile);
  afterStops.push(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  const deadline = Date.now() + 60_000;
  let exit: ProcessExit | undefined;
  void exited.then((e) => (exit = e));
  // The announcement is a line on stderr; there is no event to await across processes.
  for (;;) {
    const m = /metrics on (http:\/\/\S+)\/metrics/.exec(output());
    if (m) return { opsUrl: m[1] as string, output, exited };
    if (exit !== undefined) throw new Error(`nudge worker exited (${JSON.stringify(exit)}):\n${output().slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`nudge worker announced no metrics URL in 60 s:\n${output().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const afterStops: Array<() => Promise<void>> = [];
const auth = { authorization: `Bearer ${token}` };

describe('access control: ops API token and a least-privilege Redis ACL user (issue 6 item 10)', () => {
  let redisServer: RedisServerHandle;
  let admin: Redis;
  let asUser: Redis;
  let receiver: WebhookReceiver;
  let engine: EngineProcess;
  let worker: WorkerProcess;
  let log: LogMessage[];
  let ref: RefResult;
  let journeyEvents: AppEvent[];
  let configFile: string;

  beforeAll(async () => {
    redisServer = await startRedisServer();
    admin = new Redis(redisServer.url);
    expect(await admin.call('ACL', 'SETUSER', user, ...aclFromDoc())).toBe('OK');
    await admin.call('ACL', 'LOG', 'RESET');

    // The seeded reference log, then one kyc_passed a minute before NOW for some users: the
    // journey's trigger (older events are past maxTriggerAge by design).
    log = buildReferenceLog({ seed: 20261207, users: 400, days: 12, events: 8_000, partitions: PARTITIONS, startMs: START, nowMs: NOW, reportingTimeZone: ZONE });
    const users = [...new Set(log.flatMap((m) => (m.ref.event ? [m.ref.event.userId] : [])))].sort().slice(0, JOURNEY_USERS);
    journeyEvents = users.map((userId, i) => ({ eventId: `kyc-${suffix}-${i}`, userId, name: 'kyc_passed', timeMs: NOW - 60_000 + i, channel: 'app', props: {}, value: 0, tz: ZONE, deviceId: '', sentMs: 0 }));
    for (const e of journeyEvents) {
      const partition = partitionOf(e.userId, PARTITIONS);
      log.push({ partition, key: e.userId, value: Buffer.from(encodeEvent(e)), ref: { partition, event: e } });
    }
    ref = runReference(log.map((m) => m.ref), refSpec, NOW);

    await createTopic(inject('kafkaBrokers'), topic, PARTITIONS);
    await createTopic(inject('kafkaBrokers'), `${topic}.dlq`, 1);
    await produceLog(inject('kafkaBrokers'), topic, log);

    receiver = await startWebhookReceiver(secret);
    configFile = testConfig(yaml(redisServer.url, uniqueName('access-group'), receiver.url)).file;
    engine = await startEngineProcess({ configFile, clockMs: NOW });
    worker = await startWorker(configFile);
    await waitForLanes(admin, namespace, topic, await highWatermarks(inject('kafkaBrokers'), topic), 180_000);
    await receiver.waitFor(JOURNEY_USERS, 120_000).catch(async (err: Error) => {
      // What Redis refused and what the processes said: the likely causes of a stall here.
      const refused = JSON.stringify(await admin.call('ACL', 'LOG', '20'));
      throw new Error(`${err.message}\nACL LOG: ${refused}\nengine stderr:\n${engine.stderrTail()}\nworker output:\n${worker.output().slice(-4000)}`);
    });

    const { url, options } = ioredisOptions(testConfig(yaml(redisServer.url, 'unused', receiver.url)).config.redis);
    asUser = new Redis(url, { ...options, retryStrategy: () => null });
  }, 400_000);

  afterAll(async () => {
    await engine?.stop();
    for (const stop of afterStops.splice(0)) await stop();
    await receiver?.close();
    asUser?.disconnect();
    if (admin) {
      await dropNamespace(admin, namespace);
      await admin.quit();
    }
    await redisServer?.stop();
    await deleteTopics(inject('kafkaBrokers'), [topic, `${topic}.dlq`]);
  });

  it('logs in as the ACL user it was given (not as the default user)', async () => {
    const clients = (await admin.call('CLIENT', 'LIST')) as string;
    const users = clients.split('\n').filter((l) => l.length > 0).map((l) => /user=(\S+)/.exec(l)?.[1]);
    // Engine (state, relay, workers, BullMQ's blocking connection) and nudge worker, all as the user; admin is this test.
    expect(users.filter((u) => u === user).length).toBeGreaterThanOrEqual(3);
    expect(users.filter((u) => u !== user)).toEqual(['default']);
  });

  it('commits state equal to the brute-force reference under the least-privilege user', async () => {
    const { config } = testConfig(yaml(redisServer.url, 'unused', receiver.url));
    // Read back as the ACL user: the query side needs no more rights than the engine.
    const queries = new StateQueries(asUser, namespace, topic, compileStateSpec(config));
    expect(ref.users.size).toBeGreaterThan(200);
    expect(await countMismatches(queries, ref, refSpec)).toEqual([]);
    expect((await userMismatches(queries, ref, refSpec, NOW)).slice(0, 10)).toEqual([]);
  });

  it('delivers every journey touch exactly once, signed, and nothing else', async () => {
    // A quiet second after the last expected delivery: anything extra would have arrived by now.
    await new Promise((r) => setTimeout(r, 1_000));
    const got = receiver.requests.map((r) => {
      const body = JSON.parse(r.body) as { data: { userId: string; journeyId: string; stepId: string } };
      return { id: r.id, verified: verifyStandardWebhook(secret, r.headers, r.body, r.at), ...body.data };
    });
    expect(got.filter((g) => g.verified !== null)).toEqual([]);
    // 'main': the step a journey without `steps` has (docs/config.md).
    const want = journeyEvents.map((e) => `${e.userId} ${refTouchId('kyc-welcome', 'main', e.userId, e.eventId)}`).sort();
    expect(got.map((g) => `${g.userId} ${g.id}`).sort()).toEqual(want);
    expect(got.every((g) => g.journeyId === 'kyc-welcome')).toBe(true);
  });

  it('refuses the ACL user keys outside its patterns and the dangerous commands (NOPERM)', async () => {
    const probes: Array<[string, () => Promise<unknown>]> = [
      ['GET another key', () => asUser.get('someone-else:secret')],
      ['SET another key', () => asUser.set('bull:other-queue:x', '1')],
      ['EVAL touching another key', () => asUser.eval("return redis.call('GET', KEYS[1])", 1, 'someone-else:secret')],
      ['FLUSHALL', () => asUser.flushall()],
      ['FLUSHDB', () => asUser.flushdb()],
      ['KEYS', () => asUser.keys('*')],
      ['CONFIG GET', () => asUser.config('GET', 'maxmemory-policy')],
      ['CONFIG SET', () => asUser.config('SET', 'maxmemory-policy', 'allkeys-lru')],
      ['ACL LIST', () => asUser.call('ACL', 'LIST')],
      ['SCRIPT FLUSH', () => asUser.script('FLUSH')],
      ['CLIENT LIST', () => asUser.call('CLIENT', 'LIST')],
    ];
    const outcomes: string[] = [];
    for (const [name, probe] of probes) {
      outcomes.push(await probe().then(() => `${name}: allowed`, (err: Error) => `${name}: ${/NOPERM/.test(err.message) ? 'NOPERM' : err.message}`));
    }
    expect(outcomes).toEqual(probes.map(([name]) => `${name}: NOPERM`));
    // And it can do its own work: the controls for the probes above.
    expect(await asUser.set(`${namespace}:probe`, '1')).toBe('OK');
    expect(await asUser.info('memory')).toMatch(/^maxmemory_policy:noeviction/m);
  });

  it('was refused nothing else: ACL LOG holds only the deliberate probes', async () => {
    const entries = (await admin.call('ACL', 'LOG', '128')) as unknown[][];
    const seen = entries.map((flat) => {
      const e: Record<string, unknown> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) e[String(flat[i])] = flat[i + 1];
      return `${String(e.reason)} ${String(e.object)}`;
    });
    const probes = new Set(['key someone-else:secret', 'key bull:other-queue:x', 'command flushall', 'command flushdb', 'command keys', 'command config|get', 'command config|set', 'command acl|list', 'command script|flush', 'command client|list']);
    expect(seen.filter((s) => !probes.has(s))).toEqual([]);
    expect(seen.length).toBeGreaterThanOrEqual(probes.size);
  });

  it('needs the bearer token on /v1/* and /metrics of the engine and of nudge worker; health stays open', async () => {
    const wrongSameLength = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
    const attempts: Array<[string, Record<string, string>]> = [
      ['none', {}],
      ['wrong, same length', { authorization: `Bearer ${wrongSameLength}` }],
      ['wrong, shorter', { authorization: `Bearer ${token.slice(0, 16)}` }],
      ['another scheme', { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` }],
      ['token with a suffix', { authorization: `Bearer ${token}x` }],
    ];
    const userId = journeyEvents[0]!.userId;
    const statuses: string[] = [];
    for (const [name, headers] of attempts) {
      for (const path of [`/v1/users/${userId}`, '/v1/journeys', '/metrics']) statuses.push(`engine ${path} ${name}: ${(await fetch(`${engine.opsUrl}${path}`, { headers })).status}`);
      statuses.push(`worker /metrics ${name}: ${(await fetch(`${worker.opsUrl}/metrics`, { headers })).status}`);
    }
    expect(statuses.filter((s) => !s.endsWith(': 401'))).toEqual([]);

    // The scheme is case-insensitive (RFC 7235); the token is not.
    const res = await fetch(`${engine.opsUrl}/v1/users/${userId}`, { headers: { authorization: `bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { firstSeen: string }).firstSeen).toBe(new Date(ref.users.get(userId)!.firstSeen).toISOString());
    const metrics = await fetch(`${engine.opsUrl}/metrics`, { headers: auth });
    expect(metrics.status).toBe(200);
    expect(metricValue(await metrics.text(), 'nudge_events_applied_total')).toBeGreaterThan(0);
    const workerMetrics = await (await fetch(`${worker.opsUrl}/metrics`, { headers: auth })).text();
    expect(workerMetrics).toMatch(/^nudge_touch_deliveries_total\{channel="hook",result="sent"\} \d+/m);
    expect((await fetch(`${engine.opsUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${engine.opsUrl}/readyz`)).status).toBe(200);
    const unauthorized = await fetch(`${engine.opsUrl}/v1/journeys`);
    expect(unauthorized.headers.get('www-authenticate')).toBe('Bearer');
    expect(await unauthorized.text()).not.toContain(token);
  });

  it('never writes the token or the Redis password to its output, not even when a login fails', async () => {
    expect(worker.output()).toContain('nudge worker: delivering touches');
    for (const text of [worker.output(), engine.stderrTail()]) {
      expect(text).not.toContain(token);
      expect(text).not.toContain(password);
    }
    // A worker given a wrong password: the error it logs names the problem, not the secret.
    const wrong = `wrong-${randomBytes(12).toString('hex')}`;
    const failing = spawnWorker(configFile, { NUDGE_REDIS_PASSWORD: wrong });
    try {
      const deadline = Date.now() + 30_000;
      while (!/WRONGPASS/.test(failing.output())) {
        if (Date.now() > deadline) throw new Error(`no WRONGPASS in the worker's output within 30 s:\n${failing.output().slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(failing.output()).not.toContain(wrong);
      expect(failing.output()).not.toContain(token);
    } finally {
      failing.child.kill('SIGKILL');
      await failing.exited;
    }
    // And the engine given a wrong password: it must not start, must say what to check, and
    // must not print the password.
    const { file } = testConfig(yaml(redisServer.url, uniqueName('access-wrong'), receiver.url).replace(`password: "${password}"`, `password: "${wrong}"`));
    const outcome = await startEngineProcess({ configFile: file, readyTimeoutMs: 20_000 }).then(
      async (e) => {
        await e.kill();
        return 'started';
      },
      (err: Error) => err.message,
    );
    expect(outcome).toMatch(/refused the login \(WRONGPASS .*\)\. Check redis\.username and redis\.password/);
    expect(outcome).not.toContain(wrong);
  });
});

/** A CA, a server certificate for localhost signed by it (PKCS12 for the broker), and an unrelated CA. */
function makeCertificates(dir: string, password: string): { caFile: string; otherCaFile: string; keystoreFile: string } {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Nudge test CA');
  openssl('req', '-x509', ...ec, '-keyout', 'other.key', '-out', 'other-ca.pem', '-days', '2', '-subj', '/CN=Nudge test CA');
  openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'san.cnf'), 'subjectAltName=DNS:localhost\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.cnf');
  openssl('pkcs12', '-export', '-in', 'server.pem', '-inkey', 'server.key', '-certfile', 'ca.pem', '-out', 'server.p12', '-passout', `pass:${password}`, '-name', 'broker');
  return { caFile: join(dir, 'ca.pem'), otherCaFile: join(dir, 'other-ca.pem'), keystoreFile: join(dir, 'server.p12') };
}

describe('Kafka over TLS and SASL: a wrong CA or password fails closed (issue 6 item 10)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nudge-tls-'));
  const tlsTopic = uniqueName('tls');
  const tlsNamespace = `tls${suffix}`;
  let certs: ReturnType<typeof makeCertificates>;
  let broker: KafkaBrokerHandle;
  let redis: Redis;
  const EVENTS = 200;

  const scramUser = 'nudge-engine';
  const scramPassword = randomBytes(16).toString('hex');

  function tlsYaml(caFile: string, ns: string, sasl?: { password: string }): string {
    const security = sasl
      ? `{ protocol: sasl_ssl, sasl: { mechanism: SCRAM-SHA-512, username: ${scramUser}, password: "${sasl.password}" }, tls: { caFile: ${caFile} } }`
      : `{ protocol: ssl, tls: { caFile: ${caFile} } }`;
    return `
kafka:
  brokers: [${sasl ? broker.saslSslBrokers : broker.sslBrokers}]
  topic: ${tlsTopic}
  dlqTopic: ${tlsTopic}.dlq
  groupId: ${uniqueName('tls-group')}
  security: ${security}
redis: { url: ${inject('redisUrl')}, keyPrefix: ${ns} }
http: { port: 0 }
`;
  }

  beforeAll(async () => {
    const password = randomBytes(12).toString('hex');
    certs = makeCertificates(dir, password);
    broker = await startKafkaBroker({ ssl: { keystoreFile: certs.keystoreFile, keystorePassword: password, scram: { username: scramUser, password: scramPassword } } });
    redis = new Redis(inject('redisUrl'));
    await createTopic(broker.brokers, tlsTopic, 1);
    await createTopic(broker.brokers, `${tlsTopic}.dlq`, 1);
    const events: LogMessage[] = [];
    for (let i = 0; i < EVENTS; i++) {
      const e: AppEvent = { eventId: `tls-${i}`, userId: `u${i % 20}`, name: 'login', timeMs: NOW - 60_000 + i, channel: 'app', props: {}, value: 0, tz: 'UTC', deviceId: '', sentMs: 0 };
      events.push({ partition: 0, key: e.userId, value: Buffer.from(encodeEvent(e)), ref: { partition: 0, event: e } });
    }
    // Produced over the PLAINTEXT listener (the test's side); the engines get only the SSL one.
    await produceLog(broker.brokers, tlsTopic, events);
  }, 180_000);

  afterAll(async () => {
    if (redis) {
      for (const ns of [tlsNamespace, `${tlsNamespace}w`, `${tlsNamespace}s`, `${tlsNamespace}p`]) await dropNamespace(redis, ns);
      await redis.quit();
    }
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to start with another CA, saying to check the CA setting, and consumes nothing', async () => {
    const { file } = testConfig(tlsYaml(certs.otherCaFile, `${tlsNamespace}w`));
    const started = Date.now();
    const outcome = await startEngineProcess({ configFile: file, readyTimeoutMs: 90_000 }).then(
      async (e) => {
        await e.kill();
        return 'started';
      },
      (err: Error) => err.message,
    );
    expect(outcome).toMatch(/the TLS handshake failed \(.*certificate verify failed/);
    expect(outcome).toContain('Check kafka.security.tls.caFile (NUDGE_KAFKA_SSL_CA_FILE)');
    expect(Date.now() - started).toBeLessThan(90_000);
    // Nothing was consumed: no lane of that engine's namespace ever got a fence.
    expect(await redis.keys(`{${tlsNamespace}w:*`)).toEqual([]);
  });

  it('refuses to start with a wrong SCRAM password, saying to check the SASL settings, without echoing it', async () => {
    const wrong = `wrong-${randomBytes(8).toString('hex')}`;
    const { file } = testConfig(tlsYaml(certs.caFile, `${tlsNamespace}p`, { password: wrong }));
    const outcome = await startEngineProcess({ configFile: file, readyTimeoutMs: 90_000 }).then(
      async (e) => {
        await e.kill();
        return 'started';
      },
      (err: Error) => err.message,
    );
    expect(outcome).toMatch(/authentication failed \(.*SASL authentication error/);
    expect(outcome).toContain('Check kafka.security.sasl.mechanism and the username and password');
    expect(outcome).not.toContain(wrong);
    expect(await redis.keys(`{${tlsNamespace}p:*`)).toEqual([]);
  });

  it('consumes every event over SASL_SSL with SCRAM-SHA-512 and the right CA', async () => {
    const { file } = testConfig(tlsYaml(certs.caFile, `${tlsNamespace}s`, { password: scramPassword }));
    const engine = await startEngineProcess({ configFile: file, readyTimeoutMs: 90_000 });
    try {
      await waitForLanes(redis, `${tlsNamespace}s`, tlsTopic, await highWatermarks(broker.brokers, tlsTopic), 60_000);
      expect(await readMetric(engine.opsUrl, 'nudge_events_applied_total')).toBe(EVENTS);
      expect(engine.stderrTail()).not.toContain(scramPassword);
    } finally {
      await engine.stop();
    }
  });

  it('consumes every event with the right CA, over the SSL listener', async () => {
    const { file } = testConfig(tlsYaml(certs.caFile, tlsNamespace));
    const engine = await startEngineProcess({ configFile: file, readyTimeoutMs: 90_000 });
    try {
      await waitForLanes(redis, tlsNamespace, tlsTopic, await highWatermarks(broker.brokers, tlsTopic), 60_000);
      expect(await readMetric(engine.opsUrl, 'nudge_events_applied_total')).toBe(EVENTS);
    } finally {
      await engine.stop();
    }
  });
});
