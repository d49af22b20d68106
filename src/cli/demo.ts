import { createWriteStream, existsSync, rmSync, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { loadConfig } from '../config/load.js';
import { parseDuration } from '../config/duration.js';
import type { NudgeConfig } from '../config/schema.js';
import { DEFAULT_EVENT_LIMITS } from '../contract/validate.js';
import { Engine } from '../engine/engine.js';
import { compileStateSpec } from '../engine/state-spec.js';
import { ErrorCodes, NudgeError } from '../errors.js';
import { createLogger } from '../log.js';
import { createMetricsRegistry } from '../metrics/registry.js';
import { InProcessSource, MemoryDeadLetters } from '../sources/in-process-source.js';
import { ioredisOptions } from '../state/redis-options.js';
import { findOrStartRedis, type DemoRedis } from './demo-redis.js';
import { feedLines, HISTORY_EVENTS_PER_USER_DAY, replayHistory, runLive } from './demo-traffic.js';
import { DemoStats, FramePrinter, type DemoSnapshot } from './demo-view.js';

export const DEMO_USAGE = `nudge demo — Nudge on the embedded default (npm start): no Kafka, Redis found or started

Usage: nudge demo [options]          synthetic banking traffic (the load generator)
       nudge demo - | --stdin         JSON lines from stdin instead (the contract's fields, as 'nudge produce')

Options:
  --rate R           live events per second (default 2000)
  --users U          registered users (default 10000)
  --history D        days of history replayed first, unpaced; 0 for none (default 45d: MAU needs
                     30 days of past, "churned" more than 30 days of absence)
  --duration D       stop after this long of live traffic (or stdin), e.g. 60s; default: at Ctrl-C
  --seed S           traffic seed; the same seed gives the same traffic (default: random, printed)
  --port P           ops API port (default: http.port of the config, or a free one when taken)
  --partitions N     in-process partitions, i.e. pipeline lanes (default 4)
  --config FILE      config (default: $NUDGE_CONFIG, else config/nudge.yaml: the banking playbook)

Events go from an in-process source through the same pipeline as 'nudge run' (decode, lanes,
state step, journeys, outbox, BullMQ relay and workers); Redis is the configured one if it
answers (keys under nudge-demo:*, cleared at start), else a private redis-server from the PATH
that stops with the demo. Touches go to the log adapter: nothing leaves this machine.
Ctrl-C stops cleanly (exit code 0); a second Ctrl-C quits at once (130).
`;

/** Key namespace and queue of the demo: apart from a `nudge run` that may share the Redis. */
export const DEMO_NAMESPACE = 'nudge-demo';
export const DEMO_QUEUE = 'nudge-demo-touches';

export interface DemoIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream;
  stdin: Readable;
}

const DAY_MS = 86_400_000;
const SHOWN_REJECTS = 20;

/**
 * `nudge demo` (DESIGN §2.5): Redis found or started, the Engine with an in-process source
 * (`EngineOptions.embedded`), traffic, a view refreshed every second, and a clean stop.
 *
 * The traffic is honest about time: the engine judges the future and the age of triggers by
 * the wall clock, so the demo does not fast-forward simulated time (events ahead of the clock
 * would be clamped, and events behind it by more than maxTriggerAge trigger nothing). It
 * replays `--history` days of past traffic unpaced first — state, counts, stages, streaks —
 * then runs real-time traffic at `--rate`, which journeys react to (`replayHistory`, `runLive`).
 *
 * Returns the exit code: 0 at the end of `--duration`, and at the end of a Ctrl-C (SIGINT) or
 * SIGTERM stop — the user asked for it and everything stopped cleanly, as with `nudge run`
 * (a second Ctrl-C quits at once with 130). It throws when it cannot start (no Redis: main
 * prints how to get one and exits 1; a bad flag: 2).
 */
export async function demoCommand(args: string[], io: DemoIo = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin }): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      rate: { type: 'string', default: '2000' },
      users: { type: 'string', default: '10000' },
      history: { type: 'string', default: '45d' },
      duration: { type: 'string' },
      seed: { type: 'string' },
      stdin: { type: 'boolean', default: false },
      port: { type: 'string' },
      partitions: { type: 'string', default: '4' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.stdout.write(DEMO_USAGE);
    return 0;
  }
  const extra = positionals.filter((p) => p !== '-');
  if (extra.length > 0) throw usage(`unexpected argument "${extra[0]}"; give - (or --stdin) to read JSON lines from stdin`);
  const fromStdin = values.stdin || positionals.includes('-');
  const rate = positiveNumber('--rate', values.rate);
  const users = wholeNumber('--users', values.users, 1);
  const partitions = wholeNumber('--partitions', values.partitions, 1);
  const historyMs = values.history === '0' ? 0 : durationFlag('--history', values.history);
  const durationMs = values.duration === undefined ? undefined : durationFlag('--duration', values.duration);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : wholeNumber('--seed', values.seed, 0);
  const port = values.port === undefined ? undefined : wholeNumber('--port', values.port, 0);
  const configFile = values.config ?? process.env.NUDGE_CONFIG ?? (existsSync('config/nudge.yaml') ? 'config/nudge.yaml' : undefined);
  const base = configFile === undefined ? loadConfig({ env: process.env, defaultsOnly: true }) : loadConfig({ file: configFile, env: process.env });

  const out = new FramePrinter(io.stdout);
  const say = (text: string): void => out.line(text);
  say(
    `nudge demo: Nudge without Kafka — ${fromStdin ? 'JSON lines from stdin' : `synthetic banking traffic (seed ${seed}, ${users.toLocaleString('en-US')} users)`} ` +
      `through the real pipeline: lanes, state step, journeys, outbox, BullMQ relay and workers. Config: ${configFile ?? 'built-in defaults'}.`,
  );

  // Signals first: a Ctrl-C while Redis starts must still stop it.
  const stop = new AbortController();
  let redis: DemoRedis | null = null;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      say(`nudge demo: ${signal}: stopping cleanly (Ctrl-C again to quit at once)...`);
      stop.abort();
    } else {
      // No clean stop: kill the private redis-server and drop its data now (its guard would
      // kill it when this process dies, but leave the temp dir behind).
      io.stderr.write('nudge demo: quitting at once\n');
      if (redis?.server) {
        try {
          process.kill(redis.server.pid, 'SIGKILL');
          rmSync(redis.server.dir, { recursive: true, force: true });
        } catch {
          // gone already
        }
      }
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let engine: Engine | null = null;
  let logStream: WriteStream | null = null;
  let viewTimer: NodeJS.Timeout | null = null;
  try {
    redis = await findOrStartRedis(base);
    say(redis.note);
    if (stop.signal.aborted) return 0;
    if (redis.server === null) {
      const cleared = await clearDemoKeys(base, redis.url);
      say(`redis: the demo keeps its keys under ${DEMO_NAMESPACE}:* and queue ${DEMO_QUEUE}${cleared > 0 ? ` (cleared ${cleared} key${cleared === 1 ? '' : 's'} of an earlier demo)` : ''}`);
    }
    const opsPort = port ?? ((await canListen(base.http.host, base.http.port)) ? base.http.port : 0);
    const config = demoConfig(base, redis, opsPort);
    const logFile = join(tmpdir(), `nudge-demo-${process.pid}.log`);
    logStream = createWriteStream(logFile, { flags: 'a' });
    const logger = createLogger({ level: config.log.level, name: 'demo', destination: logStream });
    const replaced = Object.keys(base.touches.channels).filter((c) => base.touches.channels[c]?.webhook !== undefined);
    say(
      `touches: delivered by the log adapter${replaced.length > 0 ? ` (the webhook of ${replaced.join(', ')} too: nothing leaves this machine)` : ''}; ` +
        `each one is a line in ${logFile}`,
    );

    const source = new InProcessSource({ partitions });
    const deadLetters = new MemoryDeadLetters();
    const registry = createMetricsRegistry();
    const spec = compileStateSpec(config);
    engine = new Engine({ config, spec, logger, registry, workers: true, embedded: { source, deadLetters, ingest: source } });
    await engine.start();
    const opsUrl = engine.opsUrl ?? '(off)';
    const journeys = (spec.rules?.journeys ?? []).map((j) => j.id);
    const example = config.journeys[0]?.id ?? journeys[0];
    const stats = new DemoStats({
      engine,
      registry,
      source,
      deadLetters,
      namespace: config.redis.keyPrefix,
      topic: config.kafka.topic,
      metrics: spec.metrics.map((m) => m.name),
      journeys,
      reportingTimeZone: spec.reportingTimeZone,
    });
    const token = config.http.token !== undefined ? ' -H "Authorization: Bearer $NUDGE_HTTP_TOKEN"' : '';
    let header = `ops API ${opsUrl} · Ctrl-C stops`;
    const footer = [
      `try        curl${token} ${opsUrl}/v1/active?window=mau · /v1/stages · /v1/journeys${example !== undefined ? `/${example}/stats` : ''} · /metrics`,
      `${redis.server ? `redis      private redis-server ${redis.url} (pid ${redis.server.pid}), stopped at exit` : `redis      ${redactUrl(redis.url)}, keys under ${DEMO_NAMESPACE}:*`} · log ${logFile}`,
    ];
    say(`ops API: ${opsUrl} (GET /healthz, /readyz, /metrics, /v1/active, /v1/users/{id}, /v1/stages, /v1/journeys/{id}/stats; POST /v1/events feeds the demo)`);

    // What the view says the demo is doing; the traffic below updates it.
    let phase = 'starting';
    let progress: DemoSnapshot['progress'];
    let drawing = false;
    const snapshot = (): Promise<DemoSnapshot> => stats.snapshot({ header, phase, ...(progress !== undefined ? { progress } : {}), footer });
    const draw = async (): Promise<void> => {
      if (drawing) return;
      drawing = true;
      try {
        out.frame(await snapshot());
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'demo view: a frame could not be read');
      } finally {
        drawing = false;
      }
    };
    viewTimer = setInterval(() => void draw(), 1_000);

    // The run ends at Ctrl-C, or `durationMs` after the traffic (or stdin) starts.
    const run = new AbortController();
    if (stop.signal.aborted) run.abort(); // a Ctrl-C while the engine started
    else stop.signal.addEventListener('abort', () => run.abort(), { once: true });
    let deadline: NodeJS.Timeout | null = null;
    const startClock = async (): Promise<number> => {
      await stats.markLive();
      const started = Date.now();
      if (durationMs !== undefined) deadline = setTimeout(() => run.abort(), durationMs);
      return started;
    };
    const timed = (started: number): DemoSnapshot['progress'] =>
      durationMs === undefined
        ? undefined
        : { fraction: (Date.now() - started) / durationMs, label: `${Math.min(durationMs, Date.now() - started) / 1000 | 0} s of ${durationMs / 1000} s` };

    let summary: string;
    if (fromStdin) {
      const started = await startClock();
      phase = 'stdin: reading JSON lines (one event per line) into the pipeline';
      const progressTimer = setInterval(() => (progress = timed(started)), 250);
      let shown = 0;
      const lines = await feedLines(io.stdin, source, {
        limits: { ...DEFAULT_EVENT_LIMITS, ...config.events },
        signal: run.signal,
        onReject: (line, code, message) => {
          if (++shown <= SHOWN_REJECTS) say(`stdin line ${line}: ${code}: ${message}`);
          else if (shown === SHOWN_REJECTS + 1) say('stdin: more rejected lines are counted, not shown');
        },
      });
      summary = `stdin: ${lines.produced.toLocaleString('en-US')} events from ${lines.lines.toLocaleString('en-US')} lines, ${lines.rejected} rejected`;
      if (!run.signal.aborted) {
        phase = `${summary}; stdin ended — the ops API stays up${durationMs === undefined ? ' until Ctrl-C' : ' until the end of --duration'}`;
        await new Promise<void>((resolve) => (run.signal.aborted ? resolve() : run.signal.addEventListener('abort', () => resolve(), { once: true })));
      }
      clearInterval(progressTimer);
      (io.stdin as Readable & { destroy?: () => void }).destroy?.();
    } else {
      let history = 0;
      let population = users;
      if (historyMs > 0) {
        const days = historyMs / DAY_MS;
        phase = `history: replaying ${fmtDays(days)} of past traffic unpaced (~${Math.round(users * HISTORY_EVENTS_PER_USER_DAY * days).toLocaleString('en-US')} events) so DAU/WAU/MAU, stages and streaks have a past`;
        progress = { fraction: 0, label: 'history' };
        const replayed = await replayHistory(source, {
          seed,
          users,
          days,
          endMs: Date.now(),
          reportingTimeZone: spec.reportingTimeZone,
          signal: run.signal,
          onProgress: (p) => (progress = { fraction: p.fraction, label: `history: ${p.produced.toLocaleString('en-US')} events replayed` }),
        });
        history = replayed.produced;
        population = replayed.registeredUsers;
        // The live traffic starts on the history's state (a Ctrl-C skips the wait).
        if (!run.signal.aborted) await Promise.race([source.drained(), new Promise((r) => run.signal.addEventListener('abort', r, { once: true }))]);
      }
      let live = 0;
      if (!run.signal.aborted) {
        const started = await startClock();
        phase =
          `live: real-time traffic from ${population.toLocaleString('en-US')} users (seed ${seed})${durationMs === undefined ? '' : ` for ${durationMs / 1000} s`}, ` +
          `${rate.toLocaleString('en-US')} events/s averaged over a day: the local hour sets the pace, and it climbs for a minute as sessions get going`;
        progress = timed(started);
        const progressTimer = setInterval(() => (progress = timed(started)), 250);
        live = await runLive(source, { seed, users: population, ratePerSec: rate, reportingTimeZone: spec.reportingTimeZone, signal: run.signal, ...(durationMs !== undefined ? { durationMs } : {}) });
        clearInterval(progressTimer);
      }
      summary = `traffic: ${history.toLocaleString('en-US')} history events, ${live.toLocaleString('en-US')} live events`;
    }
    if (deadline !== null) clearTimeout(deadline);

    phase = `finishing: ${summary}; the pipeline applies what is queued`;
    // After a Ctrl-C, not long: what is still queued is dropped (the committed state stays consistent).
    const drainMs = stop.signal.aborted ? 2_000 : 10_000;
    if (!(await source.drained(drainMs))) say(`nudge demo: ${source.lag().toLocaleString('en-US')} events were still queued after ${drainMs / 1000} s; they are dropped`);
    // At the end of a run, a moment for the relay and the workers to move what the last commits decided.
    if (!stop.signal.aborted) await sleep(1_000);
    clearInterval(viewTimer);
    viewTimer = null;
    phase = stop.signal.aborted ? `stopped by a signal; ${summary}` : `done; ${summary}`;
    header = `ops API ${opsUrl} (closing now)`;
    progress = durationMs !== undefined && !fromStdin && !stop.signal.aborted ? { fraction: 1, label: `${durationMs / 1000} s of ${durationMs / 1000} s` } : progress;
    out.finish(await snapshot().catch(() => undefined));
    return 0;
  } finally {
    if (viewTimer !== null) clearInterval(viewTimer);
    out.finish();
    if (engine !== null) {
      say('nudge demo: stopping the engine (in-flight batches commit, workers finish their sends)...');
      await engine.stop();
    }
    if (redis?.server) {
      await redis.stop();
      say(`nudge demo: stopped the private redis-server (pid ${redis.server.pid}) and removed its data`);
    }
    await new Promise<void>((resolve) => (logStream === null ? resolve() : logStream.end(() => resolve())));
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (engine !== null) say('nudge demo: stopped.');
  }
}

/**
 * The loaded config with what the demo changes: its Redis, its own key namespace and queue (a
 * `nudge run` may share the Redis), the ops API port, and the log adapter instead of webhooks.
 */
export function demoConfig(config: NudgeConfig, redis: { url: string; server: unknown }, port: number): NudgeConfig {
  const channels = Object.fromEntries(
    Object.entries(config.touches.channels).map(([name, c]) => [name, c.webhook === undefined ? c : { adapter: 'log' as const, concurrency: c.concurrency, rateLimit: c.rateLimit }]),
  );
  // A private redis-server has no users or TLS: credentials meant for the configured one go.
  const redisSection =
    redis.server === null
      ? { ...config.redis, url: redis.url, keyPrefix: DEMO_NAMESPACE }
      : { url: redis.url, keyPrefix: DEMO_NAMESPACE };
  return {
    ...config,
    redis: redisSection,
    http: { ...config.http, port },
    touches: { ...config.touches, queue: DEMO_QUEUE, channels },
  } as NudgeConfig;
}

/** Deletes an earlier demo's keys on a shared Redis (never anything outside the demo's names). */
async function clearDemoKeys(config: NudgeConfig, url: string): Promise<number> {
  const { options } = ioredisOptions(config.redis);
  const client = new Redis(url, { ...options, maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  let deleted = 0;
  try {
    for (const pattern of [`{${DEMO_NAMESPACE}:*`, `${DEMO_NAMESPACE}:*`, `bull:${DEMO_QUEUE}:*`]) {
      let cursor = '0';
      do {
        const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        if (keys.length > 0) deleted += await client.unlink(...keys);
        cursor = next;
      } while (cursor !== '0');
    }
  } finally {
    client.disconnect();
  }
  return deleted;
}

function canListen(host: string, port: number): Promise<boolean> {
  if (port === 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function fmtDays(days: number): string {
  return Number.isInteger(days) ? `${days} days` : `${days.toFixed(1)} days`;
}

function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

function usage(message: string): NudgeError {
  return new NudgeError(ErrorCodes.CLI_USAGE, message);
}

function positiveNumber(flag: string, raw: string): number {
  const x = Number(raw);
  if (!Number.isFinite(x) || x <= 0) throw usage(`${flag}: expected a number above 0, got "${raw}"`);
  return x;
}

function wholeNumber(flag: string, raw: string, min: number): number {
  const x = Number(raw);
  if (!Number.isInteger(x) || x < min) throw usage(`${flag}: expected a whole number of at least ${min}, got "${raw}"`);
  return x;
}

function durationFlag(flag: string, raw: string): number {
  const ms = parseDuration(raw);
  if (ms === null || ms <= 0) throw usage(`${flag}: expected a duration like "30s", "10m" or "30d", got "${raw}"`);
  return ms;
}
