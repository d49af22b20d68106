/**
 * One question: exact activity counting (Nudge's way) or HyperLogLog — what does each cost, in
 * CPU and memory, and how wrong is HyperLogLog's DAU / WAU / MAU?
 *
 * Variants, same run, same seeded events (synthetic banking traffic of N users over 30 days, in
 * arrival order, every event counts as activity):
 * - exact: Nudge's per-user list of active days (kept in Redis as one small JSON value per user,
 *   the `active` part of a user state) and `windowIncrements` -> HINCRBY of the DAU / WAU / MAU /
 *   week / month counter hashes. Per batch of 500 events: one MGET of the batch's users, then one
 *   pipeline of the changed lists (SET) and the merged counter increments (HINCRBY).
 *   A query is one HGET.
 * - HLL: one PFADD per event into that reporting day's HyperLogLog, pipelined per 500 events.
 *   DAU = PFCOUNT of the day's key, WAU = PFCOUNT over 7 daily keys, MAU = PFCOUNT over 30.
 *   No per-user state at all.
 * Rounds are interleaved (exact, HLL, exact, HLL), each on a fresh key namespace dropped after
 * it; the table shows medians. Both run in this process (Node CPU of each is its own window).
 * Redis CPU is the server's INFO cpu delta; memory is the sum of MEMORY USAGE over the variant's
 * keys. The error of HLL is against the exact counters, which are checked against a plain
 * in-memory distinct count (Sets) first: the bench fails if "exact" is not exact.
 *
 *   npm run bench:hll -- [--users 50000] [--events 600000] [--rounds 2]
 * REDIS_URL reuses a running Redis (then its CPU includes other clients). Prints one table;
 * writes bench/results/activity-count.json.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { addActiveDay, ROLLING_DAYS, windowIncrements } from '../src/state/activity.js';
import { dayNumber } from '../src/time/calendar.js';
import { TrafficGenerator } from '../src/tools/loadgen/traffic.js';
import { cpuMicros, mainThreadSched, nowMs, redisCpuSeconds, waitShare } from './support/measure.js';
import { finishMeta, fmt, fmtInt, formatTable, loadLine, median, progress, runMeta, writeResult } from './support/report.js';
import { benchServices, cleanup, interrupted, onCleanup } from './support/services.js';

const THIS_FILE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(THIS_FILE), '..');
const ZONE = 'Asia/Shanghai';
const DAY_MS = 86_400_000;
const DAYS = 30;
type Window = 'dau' | 'wau' | 'mau';
const WINDOWS: Window[] = ['dau', 'wau', 'mau'];

interface Ev {
  user: string;
  day: number;
}

/** Counts by window, then end day -> count. */
type Counts = Record<Window, Map<number, number>>;

interface Sample {
  seconds: number;
  nodeUs: number;
  redisUs: number;
  memoryBytes: number;
  keys: number;
  cpuWait: number;
  /** µs per query (wall, one awaited command each) over all days and windows. */
  queryUs: number;
  counts: Counts;
}

function emptyCounts(): Counts {
  return { dau: new Map(), wau: new Map(), mau: new Map() };
}

/** The truth, without Redis: distinct users per window ending on each day. */
function trueCounts(events: Ev[], days: number[]): Counts {
  const byDay = new Map<number, Set<string>>();
  for (const e of events) {
    let s = byDay.get(e.day);
    if (s === undefined) byDay.set(e.day, (s = new Set()));
    s.add(e.user);
  }
  const out = emptyCounts();
  for (const end of days) {
    for (const w of WINDOWS) {
      const union = new Set<string>();
      for (let d = end - ROLLING_DAYS[w] + 1; d <= end; d++) for (const u of byDay.get(d) ?? []) union.add(u);
      out[w].set(end, union.size);
    }
  }
  return out;
}

async function drop(redis: Redis, prefix: string): Promise<{ keys: number; bytes: number }> {
  let cursor = '0';
  let keys = 0;
  let bytes = 0;
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (found.length) {
      const p = redis.pipeline();
      for (const k of found) p.memory('USAGE', k, 'SAMPLES', '0');
      for (const [err, v] of (await p.exec()) ?? []) {
        if (err) throw err;
        bytes += Number(v);
      }
      keys += found.length;
      await redis.unlink(...found);
    }
    cursor = next;
  } while (cursor !== '0');
  return { keys, bytes };
}

type Variant = {
  name: string;
  ingest: (redis: Redis, prefix: string) => Promise<void>;
  query: (redis: Redis, prefix: string, w: Window, end: number) => Promise<number>;
};

function exact(events: Ev[], batch: number): Variant {
  const hash = (prefix: string, w: string) => `${prefix}a:${w}`;
  return {
    name: `exact: active-day lists + windowIncrements -> HINCRBY (pipeline per ${batch})`,
    ingest: async (redis, prefix) => {
      for (let i = 0; i < events.length; i += batch) {
        const slice = events.slice(i, i + batch);
        const users = [...new Set(slice.map((e) => e.user))];
        const raw = await redis.mget(users.map((u) => `${prefix}u:${u}`));
        const lists = new Map<string, number[]>();
        users.forEach((u, j) => lists.set(u, raw[j] == null ? [] : (JSON.parse(raw[j] as string) as number[])));
        const changed = new Set<string>();
        const deltas = new Map<string, Map<number, number>>();
        for (const e of slice) {
          const days = lists.get(e.user) as number[];
          if (days.includes(e.day)) continue;
          for (const inc of windowIncrements(days, e.day)) {
            let h = deltas.get(inc.window);
            if (h === undefined) deltas.set(inc.window, (h = new Map()));
            h.set(inc.period, (h.get(inc.period) ?? 0) + 1);
          }
          lists.set(e.user, addActiveDay(days, e.day));
          changed.add(e.user);
        }
        const p = redis.pipeline();
        for (const u of changed) p.set(`${prefix}u:${u}`, JSON.stringify(lists.get(u)));
        for (const [w, fields] of deltas) for (const [period, n] of fields) p.hincrby(hash(prefix, w), String(period), n);
        for (const [err] of (await p.exec()) ?? []) if (err) throw err;
      }
    },
    query: async (redis, prefix, w, end) => Number((await redis.hget(hash(prefix, w), String(end))) ?? 0),
  };
}

function hll(events: Ev[], batch: number): Variant {
  const key = (prefix: string, day: number) => `${prefix}h:${day}`;
  return {
    name: `HLL: PFADD per event into the day's key (pipeline per ${batch})`,
    ingest: async (redis, prefix) => {
      for (let i = 0; i < events.length; i += batch) {
        const p = redis.pipeline();
        for (let j = i; j < Math.min(events.length, i + batch); j++) {
          const e = events[j] as Ev;
          p.pfadd(key(prefix, e.day), e.user);
        }
        for (const [err] of (await p.exec()) ?? []) if (err) throw err;
      }
    },
    query: async (redis, prefix, w, end) => {
      const keys: string[] = [];
      for (let d = end - ROLLING_DAYS[w] + 1; d <= end; d++) keys.push(key(prefix, d));
      return redis.pfcount(...keys);
    },
  };
}

async function measure(redis: Redis, probe: Redis, v: Variant, days: number[]): Promise<Sample> {
  const prefix = `bencha${randomBytes(3).toString('hex')}:`;
  const redis0 = await redisCpuSeconds(probe);
  const sched0 = mainThreadSched();
  const cpu0 = cpuMicros();
  const t0 = nowMs();
  await v.ingest(redis, prefix);
  const t1 = nowMs();
  const cpu1 = cpuMicros();
  const sched1 = mainThreadSched();
  const redis1 = await redisCpuSeconds(probe);
  const counts = emptyCounts();
  const q0 = nowMs();
  for (const end of days) for (const w of WINDOWS) counts[w].set(end, await v.query(redis, prefix, w, end));
  const q1 = nowMs();
  const { keys, bytes } = await drop(probe, prefix);
  return {
    seconds: (t1 - t0) / 1000,
    nodeUs: cpu1 - cpu0,
    redisUs: (redis1 - redis0) * 1e6,
    memoryBytes: bytes,
    keys,
    cpuWait: waitShare(sched0, sched1, t1 - t0),
    queryUs: ((q1 - q0) * 1000) / (days.length * WINDOWS.length),
    counts,
  };
}

/** Relative errors of `got` against `want`, per window: max and mean of |got - want| / want. */
function errors(got: Counts, want: Counts): Record<Window, { max: number; mean: number; worstDay: number }> {
  const out = {} as Record<Window, { max: number; mean: number; worstDay: number }>;
  for (const w of WINDOWS) {
    let max = 0;
    let sum = 0;
    let n = 0;
    let worstDay = NaN;
    for (const [day, truth] of want[w]) {
      if (truth === 0) continue;
      const rel = Math.abs((got[w].get(day) ?? 0) - truth) / truth;
      sum += rel;
      n++;
      if (rel >= max) {
        max = rel;
        worstDay = day;
      }
    }
    out[w] = { max, mean: n === 0 ? NaN : sum / n, worstDay };
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      users: { type: 'string', default: '50000' },
      events: { type: 'string', default: '600000' },
      batch: { type: 'string', default: '500' },
      rounds: { type: 'string', default: '2' },
      seed: { type: 'string', default: '20260301' },
    },
  });
  const users = Number(values.users);
  const eventCount = Number(values.events);
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
  progress(`generating ${fmtInt(eventCount)} events of ${fmtInt(users)} users over ${DAYS} days...`);
  const gen = new TrafficGenerator({ seed: Number(values.seed), users, ratePerSec: eventCount / (DAYS * 86_400), startMs: now - (DAYS + 1) * DAY_MS, reportingTimeZone: ZONE });
  const events: Ev[] = [];
  for (let i = 0; i < eventCount; i++) {
    const e = gen.next().event;
    events.push({ user: e.userId, day: dayNumber(e.timeMs, ZONE) });
  }
  const days = [...new Set(events.map((e) => e.day))].sort((a, b) => a - b);
  const truth = trueCounts(events, days);
  const variants = [exact(events, batch), hll(events, batch)];
  const samples = new Map<string, Sample[]>(variants.map((v) => [v.name, []]));
  for (let r = 1; r <= rounds; r++) {
    for (const v of variants) {
      const s = await measure(redis, probe, v, days);
      samples.get(v.name)?.push(s);
      progress(`round ${r}/${rounds}: ${v.name}: ${fmt(s.nodeUs / eventCount, 2)} Node µs/event, ${fmt(s.redisUs / eventCount, 2)} Redis µs/event`);
    }
  }
  // "Exact" must be exact: every day, every window, every round.
  for (const s of samples.get(variants[0]?.name ?? '') ?? []) {
    const e = errors(s.counts, truth);
    if (WINDOWS.some((w) => e[w].max !== 0)) throw new Error(`exact counters differ from the in-memory distinct count: ${JSON.stringify(e)}`);
  }
  const rows = variants.map((v) => {
    const ss = samples.get(v.name) ?? [];
    const first = ss[0] as Sample;
    const err = errors(first.counts, truth);
    return {
      variant: v.name,
      eventsPerSec: median(ss.map((s) => eventCount / s.seconds)),
      nodeUsPerEvent: median(ss.map((s) => s.nodeUs / eventCount)),
      redisUsPerEvent: median(ss.map((s) => s.redisUs / eventCount)),
      memoryBytes: first.memoryBytes,
      keys: first.keys,
      queryUs: median(ss.map((s) => s.queryUs)),
      cpuWait: median(ss.map((s) => s.cpuWait)),
      error: err,
      counts: Object.fromEntries(WINDOWS.map((w) => [w, Object.fromEntries(first.counts[w])])),
      samples: ss.map(({ counts: _c, ...rest }) => rest),
    };
  });
  const finalMeta = finishMeta(meta);
  const pct = (x: number) => `${fmt(x * 100, 2)} %`;
  const lastDay = days[days.length - 1] as number;
  process.stdout.write(
    `\nActivity counting, exact vs HyperLogLog: ${fmtInt(eventCount)} events of ${fmtInt(users)} users over ${days.length} reporting days, ` +
      `${rounds} interleaved round(s) (medians); on the last day DAU ${fmtInt(truth.dau.get(lastDay))}, WAU ${fmtInt(truth.wau.get(lastDay))}, MAU ${fmtInt(truth.mau.get(lastDay))}; ` +
      `Redis ${services.started.redis ? 'private' : 'shared (REDIS_URL: its CPU includes other clients)'}\n` +
      `${formatTable(
        ['variant', 'events/s', 'Node µs/ev', 'Redis µs/ev', 'keys', 'memory KB', 'µs/query', 'DAU err max/mean', 'WAU err max/mean', 'MAU err max/mean', 'CPU wait'],
        rows.map((r) => [
          r.variant,
          fmtInt(r.eventsPerSec),
          fmt(r.nodeUsPerEvent, 2),
          fmt(r.redisUsPerEvent, 2),
          fmtInt(r.keys),
          fmtInt(r.memoryBytes / 1024),
          fmt(r.queryUs, 0),
          `${pct(r.error.dau.max)} / ${pct(r.error.dau.mean)}`,
          `${pct(r.error.wau.max)} / ${pct(r.error.wau.mean)}`,
          `${pct(r.error.mau.max)} / ${pct(r.error.mau.mean)}`,
          `${fmt(r.cpuWait * 100, 0)} %`,
        ]),
      )}\n` +
      `Errors are |count - true| / true over every reporting day (window ending that day); the exact counters equal an in-memory distinct count on every day.\n` +
      `${loadLine(finalMeta)}\n`,
  );
  const file = await writeResult('activity-count', {
    bench: 'activity-count',
    meta: finalMeta,
    options: { users, events: eventCount, batch, rounds, days: days.length },
    truth: Object.fromEntries(WINDOWS.map((w) => [w, Object.fromEntries(truth[w])])),
    rows,
  });
  progress(`wrote ${path.relative(REPO, file)}`);
}

main()
  .catch((err: unknown) => {
    if (interrupted()) return;
    process.stderr.write(`[bench] activity-count bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
