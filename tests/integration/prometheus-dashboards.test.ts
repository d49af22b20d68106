import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';
import { EventProducer } from '../../src/sources/event-producer.js';
import { runLoadgen } from '../../src/tools/loadgen/run-loadgen.js';
import { dropNamespace, testConfig } from '../support/engine-harness.js';
import { panelQueries, withGrafanaVariables, type PanelQuery } from '../support/grafana-panels.js';
import { createTopic, deleteTopics, uniqueName } from '../support/kafka-admin.js';
import { documentedMetrics, familiesIn } from '../support/metrics-catalogue.js';
import { prometheusBinaries } from '../support/prometheus-binaries.js';
import { startPrometheus, type PrometheusServer } from '../support/prometheus-server.js';
import { webhookSecret } from '../support/touch-harness.js';

/**
 * The SRE view on the real thing: a real Prometheus (Debian's package) scrapes a running
 * engine fed by the load generator through the real broker and Redis, with two journeys (one
 * delivered by the log adapter, one by a webhook that sometimes fails), and then EVERY query of
 * EVERY provisioned dashboard panel must return data through Prometheus' HTTP API. The same
 * Prometheus loads our alert rules, which must evaluate without error on live data (and the
 * budget alert must go off: the test's budget is tiny); `promtool check metrics` lints the
 * engine's live /metrics, and every family in it must be in docs/metrics.md.
 */
const rulesDir = fileURLToPath(new URL('../../config/prometheus/rules', import.meta.url));
const ruleFiles = readdirSync(rulesDir).filter((f) => f.endsWith('.yml')).map((f) => join(rulesDir, f));
const topic = uniqueName('prom');
const namespace = `p${randomBytes(4).toString('hex')}`;
const queue = `touches-${randomBytes(3).toString('hex')}`;
const secret = webhookSecret();
const SCRAPE_S = 1;
// Grafana's $__rate_interval is at least 4 scrape intervals; the journey counters move once per
// 1 s poll here, so 15 s holds plenty of samples.
const VARIABLES = { rateInterval: '15s', range: '10m' };
const LOAD_MS = 45_000;

/**
 * A zone where it is about noon now: the load generator follows the daily rhythm of its zone
 * (quiet nights), and the test should see daytime traffic whenever it runs.
 */
function noonZone(now = new Date()): string {
  const offset = ((12 - now.getUTCHours() + 36) % 24) - 12;
  return offset === 0 ? 'Etc/UTC' : `Etc/GMT${offset > 0 ? '-' : '+'}${Math.abs(offset)}`;
}
const zone = noonZone();

function yaml(hookUrl: string): string {
  return `
kafka: { brokers: [${inject('kafkaBrokers')}], topic: ${topic}, dlqTopic: ${topic}.dlq, groupId: ${uniqueName('prom-group')} }
redis: { url: ${inject('redisUrl')}, keyPrefix: ${namespace} }
http: { host: 127.0.0.1, port: 0 }
time: { reportingTimeZone: ${zone}, maxTriggerAge: 1h }
lifecycle: { sweepInterval: 200ms }
activity:
  metrics:
    - name: active
    - name: financial
      events: [transfer_done, fund_purchase, payment]
policy:
  caps:
    - { name: push_daily, channel: push, max: 1, per: day }
  minGap: 10m
touches:
  queue: ${queue}
  attempts: 3
  backoff: 200ms
  channels:
    push: { adapter: log, concurrency: 8 }
    hook: { adapter: webhook, url: "${hookUrl}", secret: "${secret}", allowPrivateAddresses: true, timeout: 2s, concurrency: 8 }
journeys:
  # Every login: re-entry after 2 s, so a returning user meets the daily cap (cap_channel)
  # and the budget of 30 runs out within the test (budget gauges, the budget alert).
  - id: login-hello
    priority: 10
    trigger: { type: event, match: { name: login } }
    reEntry: { cooldown: 2s }
    channel: push
    template: hello
    holdout: 30%
    useGlobalHoldout: false
    conversion: { match: { name: page_view }, within: 1h }
    budget: { total: 30, costPerTouch: 1 }
  # A transfer not finished within 30 s: timers, cancellations (followed_by), skips
  # (reentry_never) and webhook deliveries that sometimes fail.
  - id: transfer-abandoned
    priority: 50
    trigger: { type: notFollowedBy, first: { name: transfer_started }, then: { name: transfer_done }, within: 30s, by: flow_id }
    reEntry: never
    channel: hook
    template: transfer_reminder
    holdout: 20%
    useGlobalHoldout: false
    conversion: { match: { name: transfer_done }, within: 1h }
    # A service reminder: the login touches' cap and minimum gap must not starve the webhook.
    ignoreCaps: true
`;
}

/** A webhook receiver that answers 503 to every 4th request (retried) and 400 to every 11th (rejected). */
function flakyReceiver(): Promise<{ url: string; server: Server }> {
  let n = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      n++;
      res.writeHead(n % 4 === 0 ? 503 : n % 11 === 0 ? 400 : 200).end();
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, server })));
}

const run = promisify(execFile);

describe.runIf(prometheusBinaries(['prometheus', 'promtool'], 'dashboards and alerts on a real Prometheus'))('dashboards on a real Prometheus scraping a running engine', () => {
  let engine: Engine;
  let prometheus: PrometheusServer;
  let receiver: Server;
  let producer: EventProducer;
  let redis: Redis;
  let load: Promise<number>;
  const abort = new AbortController();

  beforeAll(async () => {
    redis = new Redis(inject('redisUrl'));
    await createTopic(inject('kafkaBrokers'), topic, 4);
    await createTopic(inject('kafkaBrokers'), `${topic}.dlq`, 1);
    const hook = await flakyReceiver();
    receiver = hook.server;
    const { config } = testConfig(yaml(hook.url));
    engine = new Engine({
      config,
      spec: compileStateSpec(config),
      logger: silentLogger(),
      registry: createMetricsRegistry(),
      stateGaugesIntervalMs: 1_000,
      lagIntervalMs: 1_000,
    });
    await engine.start();
    prometheus = await startPrometheus({ targets: [new URL(engine.opsUrl as string).host], ruleFiles, scrapeIntervalS: SCRAPE_S });

    producer = new EventProducer({ connection: { 'bootstrap.servers': inject('kafkaBrokers') } });
    await producer.connect();
    // A few undecodable messages: the dead-letter panels show real dead letters.
    for (let i = 0; i < 20; i++) await producer.produce(topic, `bad-${i}`, Buffer.from([0xff, 0xff, 0xff, i]));
    load = runLoadgen(producer, { topic, seed: 7, users: 300, ratePerSec: 150, reportingTimeZone: zone, durationMs: LOAD_MS, signal: abort.signal });
  }, 120_000);

  afterAll(async () => {
    abort.abort();
    await load?.catch(() => 0);
    await producer?.disconnect();
    await prometheus?.stop();
    await engine?.stop();
    await new Promise((r) => receiver?.close(r));
    if (redis) {
      await dropNamespace(redis, namespace);
      for (const pattern of [`bull:${queue}:*`, `${namespace}:touches:*`, `{${namespace}:touches:*`]) {
        const keys = await redis.keys(pattern);
        if (keys.length) await redis.unlink(...keys);
      }
      await redis.quit();
    }
    await deleteTopics(inject('kafkaBrokers'), [topic, `${topic}.dlq`]);
  }, 60_000);

  it('answers every dashboard panel query with data', async () => {
    const queries = panelQueries();
    expect(queries.length).toBeGreaterThan(40);
    let empty: PanelQuery[] = queries;
    const started = Date.now();
    const deadline = started + 150_000;
    let last = '';
    while (empty.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 2_000));
      const still: PanelQuery[] = [];
      for (const q of empty) if ((await prometheus.query(withGrafanaVariables(q.expr, VARIABLES))).length === 0) still.push(q);
      if (still.length === 0) last = empty.map((q) => `${q.dashboard} / ${q.panel}`).join(', ');
      empty = still;
    }
    // Where the test's time goes (the slowest panels need timers, retries or a spent budget).
    if (last !== '') console.info(`every panel had data after ${Math.round((Date.now() - started) / 1000)} s; the last: ${last}`);
    expect(empty.map((q) => `${q.dashboard} / ${q.panel} (${q.refId}): ${q.expr}`)).toEqual([]);

    // Data, and the data of a working engine: not just zeros.
    const value = async (expr: string) => Number((await prometheus.query(expr))[0]?.value[1] ?? NaN);
    expect(await value('max(nudge_active_users{metric="active", window="dau"})')).toBeGreaterThan(50);
    expect(await value('sum(nudge_events_consumed_total)')).toBeGreaterThan(1_000);
    expect(await value('sum(nudge_events_invalid_total{code="NUDGE_EVENT_UNDECODABLE"})')).toBe(20);
    expect(await value('max(nudge_journey_decisions_total{journey="login-hello", outcome="send"})')).toBeGreaterThan(0);
    expect(await value('sum(nudge_journey_decision_reasons_total{reason="cap_channel"})')).toBeGreaterThan(0);
    // Delivery series exist from the start at 0 (so the panel has data at once); a webhook
    // retry needs a failing request first, so its count is awaited until the deadline.
    let retries = await value('sum(nudge_touch_deliveries_total{channel="hook", result="retry"})');
    while (!(retries > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1_000));
      retries = await value('sum(nudge_touch_deliveries_total{channel="hook", result="retry"})');
    }
    expect(retries).toBeGreaterThan(0);
    expect(await value('max(nudge_journey_budget_spent{journey="login-hello", period="total"})')).toBe(30);
  }, 240_000);

  it('evaluates every alert rule on live data without error, and the exhausted budget is alerted', async () => {
    type Rules = { groups: { rules: { name: string; health: string; lastError?: string; state?: string; alerts?: { labels: Record<string, string> }[] }[] }[] };
    const deadline = Date.now() + 30_000;
    let rules: Rules['groups'][number]['rules'] = [];
    for (;;) {
      rules = (await prometheus.api<Rules>('/api/v1/rules')).groups.flatMap((g) => g.rules);
      const budget = rules.find((r) => r.name === 'NudgeJourneyBudgetExhausted');
      if (budget?.alerts?.some((a) => a.labels.journey === 'login-hello') || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 1_000));
    }
    expect(rules.length).toBeGreaterThanOrEqual(9);
    expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual([]);
    const budget = rules.find((r) => r.name === 'NudgeJourneyBudgetExhausted');
    expect(budget?.alerts?.map((a) => `${a.labels.journey} ${a.labels.period}`)).toContain('login-hello total');
    // Nothing is wrong with the pipeline itself.
    for (const name of ['NudgeDown', 'NudgeRedisErrors', 'NudgeStateGaugesStale', 'NudgeTimerSweepBehind']) {
      expect(rules.find((r) => r.name === name)?.alerts ?? [], name).toEqual([]);
    }
  }, 60_000);

  it("serves /metrics that promtool check metrics accepts, every family documented in docs/metrics.md", async () => {
    const text = await (await fetch(`${engine.opsUrl}/metrics`)).text();
    const child = run('promtool', ['check', 'metrics'], { timeout: 30_000 });
    child.child.stdin?.end(text);
    const { stdout, stderr } = await child.catch((err: { stdout?: string; stderr?: string }) => ({ stdout: err.stdout ?? '', stderr: err.stderr ?? String(err) }));
    expect(stdout + stderr).toBe('');
    const doc = documentedMetrics();
    const families = familiesIn(text);
    expect([...families.keys()].filter((name) => !doc.has(name))).toEqual([]);
    for (const [name, type] of families) expect(doc.get(name)?.type, name).toBe(type);
    // Never a user id in a label: the loadgen's users are u000123-style ids.
    expect(text).not.toMatch(/="u\d{4,}"/);
  });
});
