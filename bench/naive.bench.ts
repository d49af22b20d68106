/**
 * One question: what does batching buy? The same seeded events applied the Nudge way — per batch
 * of 500, one MGET of the batch's users (LaneStore.loadUsers), the pure step (applyEvents) and
 * one Lua call (LaneStore.commit) — and the way a typical hand-written consumer does it: per
 * event, GET the user's JSON state, apply that one event (applyEvents on a one-event batch), SET
 * the state, one HINCRBY per counter increment and one ZADD/ZREM per timer change, each awaited.
 *
 * Both use the built-in defaults (two activity metrics and the lifecycle), so the work per event
 * is the same; the naive consumer has no fence (no exactly-once) and no atomicity, which only
 * makes it cheaper. Both must end with identical activity counters (every field of the DAU, WAU
 * and MAU hashes of both metrics): the bench fails otherwise. Rounds are interleaved (Nudge,
 * naive, Nudge, naive), each on a fresh key namespace dropped after it; the table shows medians.
 * Both variants run in this one process, one after the other (no fork: the Redis round trip, not
 * the JIT, dominates the naive figure). Redis CPU is the server's INFO cpu delta; "server
 * commands" is the INFO commandstats delta, which counts the commands a script runs as well.
 *
 *   npm run bench:naive -- [--events 50000] [--users 5000] [--batch 500] [--rounds 2]
 * REDIS_URL reuses a running Redis (then its CPU includes other clients). Prints one table;
 * writes bench/results/naive.json.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import type { AppEvent } from '../src/contract/event.js';
import { loadConfig } from '../src/config/load.js';
import { compileStateSpec } from '../src/engine/state-spec.js';
import { applyEvents, CounterHash } from '../src/state/decide.js';
import { laneKeys } from '../src/state/keys.js';
import { LaneStore } from '../src/state/lane-store.js';
import type { StateSpec } from '../src/state/spec.js';
import { TrafficGenerator } from '../src/tools/loadgen/traffic.js';
import { applyNaively, type NaiveLane } from './support/naive-step.js';
import { cpuMicros, mainThreadSched, nowMs, redisCpuSeconds, waitShare } from './support/measure.js';
import { finishMeta, fmt, fmtInt, formatTable, loadLine, median, progress, runMeta, writeResult } from './support/report.js';
import { benchServices, cleanup, interrupted, onCleanup } from './support/services.js';

const THIS_FILE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(THIS_FILE), '..');
const ZONE = 'Asia/Shanghai';
const DAY_MS = 86_400_000;
const TOPIC = 'bench.naive';

interface Sample {
  seconds: number;
  nodeUs: number;
  redisUs: number;
  /** Commands this client sent (MGET + EVALSHA per batch; GET, SET, HINCRBY... per event). */
  clientCommands: number;
  /** INFO commandstats delta: every command the server ran, inside scripts too (minus our probes). */
  serverCommands: number;
  cpuWait: number;
  /** Activity counter hashes at the end, hash -> field -> count (compared across variants). */
  counters: Record<string, Record<string, string>>;
}

async function serverCommandCount(probe: Redis): Promise<number> {
  const info = await probe.info('commandstats');
  let total = 0;
  for (const m of info.matchAll(/^cmdstat_[^:]+:calls=(\d+)/gm)) total += Number(m[1]);
  return total;
}

/** The activity counters of a namespace: every window of every metric. */
async function activityCounters(probe: Redis, namespace: string, spec: StateSpec): Promise<Record<string, Record<string, string>>> {
  const k = laneKeys(namespace, TOPIC, 0);
  const out: Record<string, Record<string, string>> = {};
  for (const metric of spec.metrics) {
    for (const window of ['dau', 'wau', 'mau', 'week', 'month']) {
      const suffix = CounterHash.activity(metric.name, window);
      out[suffix] = await probe.hgetall(k.hash(suffix));
    }
  }
  return out;
}

async function dropNamespace(redis: Redis, namespace: string): Promise<void> {
  for (const pattern of [`{${namespace}:*`, `${namespace}:*`]) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      if (keys.length) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  }
}

type Run = (redis: Redis, namespace: string) => Promise<number>;

/** The Nudge way: per batch, one MGET, the pure step, one script call. Returns client commands. */
function nudgeWay(events: AppEvent[], batch: number, spec: StateSpec, now: number): Run {
  return async (redis, namespace) => {
    const store = new LaneStore(redis, namespace, TOPIC);
    const { epoch } = await store.claim(0);
    let streamTime = 0;
    let commands = 0;
    for (let i = 0; i < events.length; i += batch) {
      const slice = events.slice(i, i + batch);
      const users = [...new Set(slice.map((e) => e.userId))];
      const loaded = await store.loadUsers(0, users);
      const result = applyEvents(slice, loaded, streamTime, now, spec);
      streamTime = result.streamTime;
      const outcome = await store.commit(0, epoch, i, i + slice.length - 1, result);
      if (outcome !== 'committed') throw new Error(`commit refused: ${outcome}`);
      commands += 2;
    }
    return commands;
  };
}

/** A hand-written consumer (bench/support/naive-step.ts): per event GET, apply, SET, HINCRBY..., each awaited. */
function naiveWay(events: AppEvent[], spec: StateSpec, now: number): Run {
  return async (redis, namespace) => {
    const lane: NaiveLane = { keys: laneKeys(namespace, TOPIC, 0), streamTime: 0 };
    let commands = 0;
    for (const e of events) commands += await applyNaively(redis, lane, e, spec, now);
    return commands;
  };
}

async function measure(redis: Redis, probe: Redis, run: Run, spec: StateSpec, events: number): Promise<Sample> {
  const namespace = `benchn${randomBytes(3).toString('hex')}`;
  const cmd0 = await serverCommandCount(probe);
  const redis0 = await redisCpuSeconds(probe);
  const sched0 = mainThreadSched();
  const cpu0 = cpuMicros();
  const t0 = nowMs();
  const clientCommands = await run(redis, namespace);
  const t1 = nowMs();
  const cpu1 = cpuMicros();
  const sched1 = mainThreadSched();
  const redis1 = await redisCpuSeconds(probe);
  // Our own probes between the two reads: INFO cpu and INFO commandstats once each.
  const cmd1 = (await serverCommandCount(probe)) - 2;
  const counters = await activityCounters(probe, namespace, spec);
  await dropNamespace(probe, namespace);
  void events;
  return {
    seconds: (t1 - t0) / 1000,
    nodeUs: cpu1 - cpu0,
    redisUs: (redis1 - redis0) * 1e6,
    clientCommands,
    serverCommands: cmd1 - cmd0,
    cpuWait: waitShare(sched0, sched1, t1 - t0),
    counters,
  };
}

/** Sum over days of the DAU counter of a metric (one number to show both variants agree). */
function dauSum(counters: Record<string, Record<string, string>>, metric: string): number {
  return Object.values(counters[CounterHash.activity(metric, 'dau')] ?? {}).reduce((a, v) => a + Number(v), 0);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      events: { type: 'string', default: '50000' },
      users: { type: 'string', default: '5000' },
      batch: { type: 'string', default: '500' },
      rounds: { type: 'string', default: '2' },
      seed: { type: 'string', default: '20260301' },
    },
  });
  const events = Number(values.events);
  const batch = Number(values.batch);
  const rounds = Math.max(1, Number(values.rounds));
  const meta = runMeta();
  const services = await benchServices({ kafka: false });
  const redis = new Redis(services.redisUrl);
  const probe = new Redis(services.redisUrl);
  onCleanup(async () => {
    redis.disconnect();
    probe.disconnect();
  });
  const now = Date.now();
  const spec = compileStateSpec(loadConfig({ defaultsOnly: true, env: { NUDGE_REPORTING_TZ: ZONE } }));
  progress(`generating ${fmtInt(events)} events of ${fmtInt(Number(values.users))} users over 4 days...`);
  const gen = new TrafficGenerator({ seed: Number(values.seed), users: Number(values.users), ratePerSec: events / (4 * 86_400), startMs: now - 5 * DAY_MS, reportingTimeZone: ZONE });
  const all: AppEvent[] = [];
  for (let i = 0; i < events; i++) all.push(gen.next().event);
  const variants: Array<{ name: string; run: Run }> = [
    { name: `Nudge: MGET + applyEvents + 1 Lua commit per ${batch} events`, run: nudgeWay(all, batch, spec, now) },
    { name: 'naive: GET, apply, SET, HINCRBY... per event, awaited', run: naiveWay(all, spec, now) },
  ];
  const samples = new Map<string, Sample[]>(variants.map((v) => [v.name, []]));
  for (let r = 1; r <= rounds; r++) {
    for (const v of variants) {
      const s = await measure(redis, probe, v.run, spec, events);
      samples.get(v.name)?.push(s);
      progress(`round ${r}/${rounds}: ${v.name}: ${fmtInt(events / s.seconds)} events/s, ${fmt(s.nodeUs / events, 1)} Node µs/event`);
    }
  }
  // Same inputs, same step: the counters must be identical field by field, in every round.
  const reference = JSON.stringify(samples.get(variants[0]?.name ?? '')?.[0]?.counters);
  for (const [name, ss] of samples) {
    for (const s of ss) {
      if (JSON.stringify(s.counters) !== reference) throw new Error(`${name}: activity counters differ from the Nudge way's`);
    }
  }
  const metric = spec.metrics[0]?.name ?? 'active';
  const base = samples.get(variants[0]?.name ?? '') ?? [];
  const baseRate = median(base.map((s) => events / s.seconds));
  const rows = variants.map((v) => {
    const ss = samples.get(v.name) ?? [];
    const first = ss[0] as Sample;
    const eventsPerSec = median(ss.map((s) => events / s.seconds));
    return {
      variant: v.name,
      eventsPerSec,
      nodeUsPerEvent: median(ss.map((s) => s.nodeUs / events)),
      redisUsPerEvent: median(ss.map((s) => s.redisUs / events)),
      clientCommandsPerEvent: first.clientCommands / events,
      serverCommandsPerEvent: median(ss.map((s) => s.serverCommands / events)),
      slowdown: baseRate / eventsPerSec,
      cpuWait: median(ss.map((s) => s.cpuWait)),
      dauSum: dauSum(first.counters, metric),
      dauDays: Object.keys(first.counters[CounterHash.activity(metric, 'dau')] ?? {}).length,
      samples: ss.map(({ counters: _c, ...rest }) => rest),
    };
  });
  const nudge = rows[0];
  for (const r of rows) {
    Object.assign(r, {
      nodeCpuRatio: r.nodeUsPerEvent / (nudge?.nodeUsPerEvent ?? NaN),
      redisCpuRatio: r.redisUsPerEvent / (nudge?.redisUsPerEvent ?? NaN),
    });
  }
  const finalMeta = finishMeta(meta);
  const dau = reference === undefined ? {} : (JSON.parse(reference) as Record<string, Record<string, string>>)[CounterHash.activity(metric, 'dau')] ?? {};
  process.stdout.write(
    `\nWhat batching buys: ${fmtInt(events)} events of ${fmtInt(Number(values.users))} users over 4 days, built-in defaults (activity + lifecycle), ` +
      `${rounds} interleaved round(s) (medians); Redis ${services.started.redis ? 'private' : 'shared (REDIS_URL: its CPU includes other clients)'}\n` +
      `${formatTable(
        ['variant', 'events/s', '× slower', 'Node µs/ev', 'Redis µs/ev', 'client cmds/ev', 'server cmds/ev', 'CPU wait'],
        rows.map((r) => [
          r.variant,
          fmtInt(r.eventsPerSec),
          `${fmt(r.slowdown, 1)}×`,
          fmt(r.nodeUsPerEvent, 1),
          fmt(r.redisUsPerEvent, 1),
          fmt(r.clientCommandsPerEvent, 3),
          fmt(r.serverCommandsPerEvent, 2),
          `${fmt(r.cpuWait * 100, 0)} %`,
        ]),
      )}\n` +
      `Same result: every activity counter field identical in both variants and all rounds; ${metric} DAU by day ` +
      `${Object.entries(dau).map(([d, n]) => `${d}:${n}`).join(' ')} (sum ${fmtInt(rows[0]?.dauSum)})\n${loadLine(finalMeta)}\n`,
  );
  const file = await writeResult('naive', { bench: 'naive', meta: finalMeta, options: { events, users: Number(values.users), batch, rounds }, dauByDay: dau, rows });
  progress(`wrote ${path.relative(REPO, file)}`);
}

main()
  .catch((err: unknown) => {
    if (interrupted()) return;
    process.stderr.write(`[bench] naive bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
