import { parseArgs } from 'node:util';
import { createReadStream, existsSync } from 'node:fs';
import { describeError, ErrorCodes, isNudgeError, NudgeError } from '../errors.js';
import { loadConfig, describeConfig, ENV_OVERRIDES } from '../config/load.js';
import { compileRules } from '../rules/compile-rules.js';
import { describeRules } from '../rules/describe-rules.js';
import type { NudgeConfig } from '../config/schema.js';
import { parseDuration } from '../config/duration.js';
import { librdkafkaOptions } from '../sources/kafka-options.js';
import { EventProducer } from '../sources/event-producer.js';
import { produceLines } from '../tools/produce-lines.js';
import { runLoadgen } from '../tools/loadgen/run-loadgen.js';
import { progressLine } from './progress.js';
import { Redis } from 'ioredis';
import { Engine } from '../engine/engine.js';
import { TouchDelivery } from '../engine/touch-delivery.js';
import { OpsServer } from '../http/ops-server.js';
import { compileStateSpec } from '../engine/state-spec.js';
import { createLogger } from '../log.js';
import { createMetricsRegistry } from '../metrics/registry.js';
import { StateQueries } from '../state/queries.js';
import { ioredisOptions } from '../state/redis-options.js';
import { dayNumber, formatDay, parseDay } from '../time/calendar.js';
import { demoCommand } from './demo.js';

const USAGE = `nudge — real-time engagement engine

Usage: nudge <command> [options]

Commands:
  demo [-]                 everything on the embedded default (npm start): no Kafka, Redis found
                           or started privately, synthetic traffic (or JSON lines on stdin with -)
                           through the real pipeline, a live view and the ops API ('nudge demo -h')
  run [--config FILE]      run the engine: Kafka -> per-user state and activity counts in Redis,
                           journeys and their touches (relay and delivery workers), the timer
                           sweep and the ops API
  worker [--config FILE]   run delivery workers only (scale sends apart from the engine)
        --failed             list touches that ran out of attempts, then exit
  stats [--day YYYY-MM-DD] DAU/WAU/MAU, week and month counts, new users and lifecycle stages
  user USER_ID             one user's state as the engine keeps it (JSON)
  produce [FILE|-]         read JSON lines (a file, or stdin) and produce protobuf events
        --topic T            topic (default: kafka.topic from the config)
        --strict             stop at the first bad line
  loadgen                  produce synthetic banking-app traffic
        --rate R             events per second (default 1000)
        --users U            registered users (default 10000)
        --duration D         how long, e.g. 60s, 10m (default 60s)
        --count N            stop after N events instead
        --seed S             seed; the same seed gives the same traffic (default: random, printed)
        --unpaced            as fast as the broker takes them, event times from --start
        --start ISO          event time of the first event (default: now)
  check-config [FILE]      validate a config file and print what it configures, journeys in plain words

Options for every command:
  --config FILE            config file (default: $NUDGE_CONFIG, else config/nudge.yaml if present)
  -h, --help               this text

Environment overrides: run 'nudge help env'.
`;

/** Entry point of `bin/nudge.js`. Returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '-h':
      case '--help':
        if (rest[0] === 'env') process.stdout.write(envHelp());
        else process.stdout.write(USAGE);
        return 0;
      case 'produce':
        return await produceCommand(rest);
      case 'loadgen':
        return await loadgenCommand(rest);
      case 'check-config':
        return checkConfigCommand(rest);
      case 'run':
        return await runCommand(rest);
      case 'stats':
        return await statsCommand(rest);
      case 'user':
        return await userCommand(rest);
      case 'worker':
        return await workerCommand(rest);
      case 'demo':
        return await demoCommand(rest);
      default:
        throw usage(`unknown command "${command}". Commands: demo, run, worker, produce, loadgen, check-config, stats, user.`);
    }
  } catch (err) {
    process.stderr.write(`nudge ${command ?? ''}: ${describeError(err)}\n`);
    if (isNudgeError(err) && err.code === ErrorCodes.CLI_USAGE) process.stderr.write(`Run 'nudge --help' for usage.\n`);
    return isNudgeError(err) && err.code === ErrorCodes.CLI_USAGE ? 2 : 1;
  }
}

async function produceCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      topic: { type: 'string' },
      strict: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const config = configFor(values.config);
  const source = positionals[0] ?? '-';
  if (source !== '-' && !existsSync(source)) throw usage(`input file not found: ${source}`);
  const input = source === '-' ? process.stdin : createReadStream(source);
  const topic = values.topic ?? config.kafka.topic;
  const producer = await connectProducer(config);
  const progress = progressLine(process.stderr);
  try {
    const result = await produceLines(input, producer, {
      topic,
      stopOnError: values.strict,
      onReject: (line, code, message) => progress.log(`line ${line}: ${code}: ${message}`),
      onProgress: (p) => progress.update(`read ${p.lines} lines, produced ${p.produced}, rejected ${p.rejected}`),
    });
    progress.update('waiting for the broker to acknowledge...');
    const stats = await producer.flush();
    progress.done(
      `produced ${result.produced} events to ${topic} (${stats.delivered} acknowledged` +
        (stats.failed > 0 ? `, ${stats.failed} FAILED: ${stats.firstError ?? ''}` : '') +
        `), rejected ${result.rejected} of ${result.lines} lines` +
        (result.stoppedEarly ? ' (stopped at the first bad line: --strict)' : ''),
    );
    return result.rejected > 0 || stats.failed > 0 ? 1 : 0;
  } finally {
    await producer.disconnect();
  }
}

async function loadgenCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      topic: { type: 'string' },
      rate: { type: 'string', default: '1000' },
      users: { type: 'string', default: '10000' },
      duration: { type: 'string' },
      count: { type: 'string' },
      seed: { type: 'string' },
      unpaced: { type: 'boolean', default: false },
      start: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const config = configFor(values.config);
  const rate = positiveNumber('--rate', values.rate);
  const users = positiveInteger('--users', values.users);
  const count = values.count === undefined ? undefined : positiveInteger('--count', values.count);
  const durationMs =
    values.duration !== undefined
      ? durationFlag(values.duration)
      : count === undefined
        ? 60_000
        : undefined;
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : positiveInteger('--seed', values.seed, 0);
  let startMs: number | undefined;
  if (values.start !== undefined) {
    startMs = Date.parse(values.start);
    if (Number.isNaN(startMs)) throw usage(`--start: expected an ISO-8601 time like 2026-11-01T00:00:00Z, got "${values.start}"`);
  }
  const topic = values.topic ?? config.kafka.topic;
  const producer = await connectProducer(config);
  const progress = progressLine(process.stderr);
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  progress.log(
    `loadgen: seed ${seed}, ${users} users, ${rate} events/s, ` +
      (count !== undefined ? `${count} events` : `${durationMs! / 1000} s`) +
      `, ${values.unpaced ? 'unpaced' : 'paced'}, topic ${topic}, reporting zone ${config.time.reportingTimeZone}`,
  );
  try {
    const produced = await runLoadgen(producer, {
      topic,
      seed,
      users,
      ratePerSec: rate,
      reportingTimeZone: config.time.reportingTimeZone,
      paced: !values.unpaced,
      ...(durationMs !== undefined ? { durationMs } : {}),
      ...(count !== undefined ? { count } : {}),
      ...(startMs !== undefined ? { startMs } : {}),
      signal: abort.signal,
      onProgress: (p) =>
        progress.update(`${bar(p.fraction)} ${p.produced} events, ${Math.round(p.produced / Math.max(1, p.elapsedMs / 1000))}/s`),
    });
    progress.update('waiting for the broker to acknowledge...');
    const stats = await producer.flush();
    progress.done(
      `produced ${produced} events to ${topic} (${stats.delivered} acknowledged${stats.failed > 0 ? `, ${stats.failed} FAILED: ${stats.firstError ?? ''}` : ''})` +
        (abort.signal.aborted ? ' — stopped by signal' : ''),
    );
    return stats.failed > 0 ? 1 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await producer.disconnect();
  }
}

function checkConfigCommand(args: string[]): number {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { config: { type: 'string' } } });
  const file = positionals[0] ?? values.config ?? process.env.NUDGE_CONFIG ?? 'config/nudge.yaml';
  const config = loadConfig({ file, env: process.env });
  process.stdout.write(`${file}: OK\n${describeConfig(config)}\n${describeRules(compileRules(config))}\n`);
  return 0;
}

async function runCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
  const config = configFor(values.config);
  const logger = createLogger({ level: config.log.level, name: 'engine' });
  const engine = new Engine({ config, spec: compileStateSpec(config), logger, registry: createMetricsRegistry() });
  await engine.start();
  process.stderr.write(`nudge run: consuming ${config.kafka.topic} as group ${config.kafka.groupId}; ops API on ${engine.opsUrl ?? '(off)'}. Ctrl-C stops.\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  process.stderr.write('nudge run: stopping (in-flight batches finish and commit)...\n');
  await engine.stop();
  return 0;
}

/**
 * Delivery workers only (DESIGN §2.4): more of them scale sends without more consumers. The
 * relay stays with the engine that owns the lanes; workers take jobs from the queue.
 */
async function workerCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, failed: { type: 'boolean', default: false } } });
  const config = configFor(values.config);
  const spec = compileStateSpec(config);
  if (spec.rules === undefined || spec.rules.journeys.length === 0) {
    process.stderr.write('nudge worker: the config has no journeys, so there is nothing to deliver. Add journeys (docs/config.md) and start again.\n');
    return 1;
  }
  const logger = createLogger({ level: config.log.level, name: 'worker' });
  const { url, options } = ioredisOptions(config.redis);
  const redis = new Redis(url, options);
  redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection error; retrying'));
  const registry = createMetricsRegistry();
  const delivery = new TouchDelivery({
    config,
    rules: spec.rules,
    logger,
    registry,
    queries: new StateQueries(redis, config.redis.keyPrefix, config.kafka.topic, spec),
    outboxKeys: () => [],
    relay: false,
    workers: !values.failed,
  });
  try {
    if (values.failed) {
      const failed = await delivery.failed();
      process.stdout.write(failed.length === 0 ? 'no failed touches\n' : `${failed.map((f) => JSON.stringify(f)).join('\n')}\n`);
      return 0;
    }
    delivery.start();
    // Its own /metrics and health endpoints, so Prometheus scrapes deliveries where they happen.
    const ops = new OpsServer({
      host: config.http.host,
      port: config.http.port,
      registry,
      logger,
      ...(config.http.token !== undefined ? { token: config.http.token } : {}),
      metricsRequireToken: config.http.metricsRequireToken,
      readiness: [{ name: 'redis', check: () => redis.status === 'ready' }],
    });
    const { url: opsUrl } = await ops.listen();
    process.stderr.write(`nudge worker: delivering touches from queue ${config.touches.queue}; metrics on ${opsUrl}/metrics. Ctrl-C stops (a send in progress finishes).\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await ops.close();
    return 0;
  } finally {
    await delivery.stop();
    redis.disconnect();
  }
}

async function withQueries<T>(configFlag: string | undefined, fn: (q: StateQueries, config: NudgeConfig) => Promise<T>): Promise<T> {
  const config = configFor(configFlag);
  const { url, options } = ioredisOptions(config.redis);
  const redis = new Redis(url, { ...options, maxRetriesPerRequest: 1, retryStrategy: () => null, lazyConnect: true });
  try {
    await redis.connect();
  } catch (err) {
    throw new NudgeError(ErrorCodes.REDIS_UNAVAILABLE, `cannot reach Redis at ${config.redis.url.replace(/\/\/[^@/]*@/, '//***@')} (${(err as Error).message}); set REDIS_URL or redis.url in the config`, { cause: err });
  }
  try {
    return await fn(new StateQueries(redis, config.redis.keyPrefix, config.kafka.topic, compileStateSpec(config)), config);
  } finally {
    redis.disconnect();
  }
}

async function statsCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, day: { type: 'string' } } });
  return withQueries(values.config, async (q, config) => {
    const zone = config.time.reportingTimeZone;
    const day = values.day === undefined ? dayNumber(Date.now(), zone) : parseDay(values.day);
    if (day === null) throw usage(`--day: expected a date like 2026-11-23, got "${values.day}"`);
    const lines = [`Nudge activity on ${formatDay(day)} (${zone}), topic ${config.kafka.topic}`];
    lines.push(`${'metric'.padEnd(14)}${['DAU', 'WAU', 'MAU', 'week', 'month'].map((h) => h.padStart(10)).join('')}`);
    for (const m of config.activity.metrics) {
      const counts = [];
      for (const w of ['dau', 'wau', 'mau', 'week', 'month'] as const) counts.push((await q.active(m.name, w, day)).count);
      lines.push(`${m.name.padEnd(14)}${counts.map((c) => String(c).padStart(10)).join('')}`);
    }
    for (const b of config.activity.breakdowns) {
      for (const m of config.activity.metrics) {
        const a = await q.active(m.name, 'dau', day, b.name);
        const parts = Object.entries(a.breakdown ?? {}).map(([v, n]) => `${v} ${n}`);
        lines.push(`${m.name} DAU by ${b.name}${a.exact ? '' : ' (HyperLogLog, ~1%)'}: ${parts.join(', ') || 'none'}`);
      }
    }
    lines.push(`new users: ${await q.newUsers(day)}`);
    for (const m of config.activity.metrics) {
      const gaps = await q.visitGaps(m.name, day);
      lines.push(`${m.name} days since previous visit: ${Object.entries(gaps).map(([g, n]) => `${g}: ${n}`).join(', ')}`);
    }
    const stages = await q.stageCounts();
    lines.push(`stages: ${Object.entries(stages).map(([s, n]) => `${s} ${n}`).join(', ')}`);
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  });
}

async function userCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { config: { type: 'string' } } });
  const userId = positionals[0];
  if (!userId) throw usage('give a user id: nudge user USER_ID');
  return withQueries(values.config, async (q) => {
    const view = await q.user(userId, Date.now());
    if (!view) {
      process.stderr.write(`no state for that user id: Nudge has not applied an event of it (check the id, and that the engine consumed the topic)\n`);
      return 1;
    }
    process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
    return 0;
  });
}

function configFor(flag: string | undefined): NudgeConfig {
  const file = flag ?? process.env.NUDGE_CONFIG ?? (existsSync('config/nudge.yaml') ? 'config/nudge.yaml' : undefined);
  return file === undefined ? loadConfig({ env: process.env, defaultsOnly: true }) : loadConfig({ file, env: process.env });
}

async function connectProducer(config: NudgeConfig): Promise<EventProducer> {
  const producer = new EventProducer({ connection: librdkafkaOptions(config.kafka), connectTimeoutMs: 15_000 });
  await producer.connect();
  return producer;
}

function envHelp(): string {
  const lines = ENV_OVERRIDES.map((o) => `  ${o.name.padEnd(32)} ${o.description}`);
  return `Environment overrides (they win over the config file):\n${lines.join('\n')}\n`;
}

function usage(message: string): NudgeError {
  return new NudgeError(ErrorCodes.CLI_USAGE, message);
}

function positiveNumber(flag: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw usage(`${flag}: expected a number above 0, got "${raw}"`);
  return n;
}

function positiveInteger(flag: string, raw: string, min = 1): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw usage(`${flag}: expected a whole number of at least ${min}, got "${raw}"`);
  return n;
}

function durationFlag(raw: string): number {
  const ms = parseDuration(raw);
  if (ms === null || ms <= 0) throw usage(`--duration: expected a duration like "30s" or "10m", got "${raw}"`);
  return ms;
}

function bar(fraction: number): string {
  const width = 24;
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}%`;
}
