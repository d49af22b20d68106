/**
 * One question: what does the one-script batch commit (LaneStore.commit: fence check, user
 * states, counters, timers, fence advance in one EVALSHA) cost per user update, in Node and in
 * Redis, and how does batch size and the number of lanes committing side by side change it?
 *
 * Variants, same run, same precomputed step results (applyEvents over 300k deliveries of seeded
 * synthetic banking traffic, the shipped config/nudge.yaml; days-old events, so no journey fires
 * and no outbox entries are written): one lane with batches of 1,000
 * events, one lane with batches of 100, and 4 lanes (users split by a hash, as Kafka keys would)
 * with batches of 1,000 committing concurrently, one commit in flight per lane as in the engine.
 * Rounds are interleaved (each on a fresh key namespace, dropped after it); the table shows
 * medians. Redis CPU is the server's INFO cpu delta.
 *
 *   npm run bench:commit -- [--events 300000] [--rounds 3]
 * REDIS_URL reuses a running Redis (then its CPU includes other clients). Prints one table;
 * writes bench/results/commit.json.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import type { AppEvent } from '../src/contract/event.js';
import { loadConfig } from '../src/config/load.js';
import { compileStateSpec } from '../src/engine/state-spec.js';
import { applyEvents, type StepResult } from '../src/state/decide.js';
import { LaneStore } from '../src/state/lane-store.js';
import type { UserState } from '../src/state/user-state.js';
import { hash32, TrafficGenerator } from '../src/tools/loadgen/traffic.js';
import { cpuMicros, nowMs, redisCpuSeconds } from './support/measure.js';
import { finishMeta, fmt, fmtInt, formatTable, loadLine, median, progress, runMeta, writeResult } from './support/report.js';
import { benchServices, cleanup, interrupted, onCleanup } from './support/services.js';

const THIS_FILE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(THIS_FILE), '..');
const ZONE = 'Asia/Shanghai';
const DAY_MS = 86_400_000;

interface Variant {
  name: string;
  lanes: number;
  batch: number;
}

const VARIANTS: Variant[] = [
  { name: '1 lane, batches of 1000', lanes: 1, batch: 1000 },
  { name: '1 lane, batches of 100', lanes: 1, batch: 100 },
  { name: '4 lanes, batches of 1000', lanes: 4, batch: 1000 },
];

interface LaneWork {
  results: StepResult[];
  /** [first, last] offsets of each batch. */
  offsets: Array<[number, number]>;
}

/** Splits the events into lanes by user, batches them, and runs the decide step over them. */
function prepare(events: AppEvent[], v: Variant, now: number): { lanes: LaneWork[]; updates: number } {
  const spec = compileStateSpec(loadConfig({ file: path.join(REPO, 'config', 'nudge.yaml'), env: {} }));
  const perLane: AppEvent[][] = Array.from({ length: v.lanes }, () => []);
  for (const e of events) perLane[v.lanes === 1 ? 0 : hash32(Number(e.userId.slice(1)), 7) % v.lanes]?.push(e);
  let updates = 0;
  const lanes = perLane.map((laneEvents) => {
    const states = new Map<string, UserState>();
    let streamTime = 0;
    const work: LaneWork = { results: [], offsets: [] };
    for (let i = 0; i < laneEvents.length; i += v.batch) {
      const batch = laneEvents.slice(i, i + v.batch);
      const loaded = new Map<string, UserState | undefined>();
      for (const e of batch) if (!loaded.has(e.userId)) loaded.set(e.userId, states.get(e.userId));
      const result = applyEvents(batch, loaded, streamTime, now, spec);
      for (const [user, s] of result.states) states.set(user, s);
      streamTime = result.streamTime;
      updates += result.states.size;
      work.results.push(result);
      work.offsets.push([i, i + batch.length - 1]);
    }
    return work;
  });
  return { lanes, updates };
}

interface Sample {
  seconds: number;
  nodeUs: number;
  redisUs: number;
  commits: number;
  updates: number;
}

async function runOnce(redis: Redis, probe: Redis, work: { lanes: LaneWork[]; updates: number }): Promise<Sample> {
  const topic = `bench.commit.${randomBytes(3).toString('hex')}`;
  const namespace = `benchc${randomBytes(3).toString('hex')}`;
  const store = new LaneStore(redis, namespace, topic);
  const epochs = await Promise.all(work.lanes.map((_, p) => store.claim(p).then((f) => f.epoch)));
  const redis0 = await redisCpuSeconds(probe);
  const cpu0 = cpuMicros();
  const t0 = nowMs();
  let commits = 0;
  await Promise.all(
    work.lanes.map(async (lane, p) => {
      for (let i = 0; i < lane.results.length; i++) {
        const [first, last] = lane.offsets[i] as [number, number];
        const outcome = await store.commit(p, epochs[p] as number, first, last, lane.results[i] as StepResult);
        if (outcome !== 'committed') throw new Error(`commit refused: ${outcome}`);
        commits++;
      }
    }),
  );
  const t1 = nowMs();
  const cpu1 = cpuMicros();
  const redis1 = await redisCpuSeconds(probe);
  await dropNamespace(probe, namespace);
  return { seconds: (t1 - t0) / 1000, nodeUs: cpu1 - cpu0, redisUs: (redis1 - redis0) * 1e6, commits, updates: work.updates };
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

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      events: { type: 'string' },
      rounds: { type: 'string', default: '3' },
      users: { type: 'string', default: '50000' },
      seed: { type: 'string', default: '20260301' },
    },
  });
  const events = Number(values.events ?? process.env.BENCH_EVENTS ?? 300_000);
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
  progress(`generating ${fmtInt(events)} events and the step results of every variant...`);
  const gen = new TrafficGenerator({ seed: Number(values.seed), users: Number(values.users), ratePerSec: events / (3 * 86_400), startMs: now - 4 * DAY_MS, reportingTimeZone: ZONE });
  const all: AppEvent[] = [];
  for (let i = 0; i < events; i++) all.push(gen.next().event);
  const prepared = VARIANTS.map((v) => ({ v, work: prepare(all, v, now) }));
  const samples = new Map<string, Sample[]>(VARIANTS.map((v) => [v.name, []]));
  for (let r = 1; r <= rounds; r++) {
    for (const { v, work } of prepared) {
      const s = await runOnce(redis, probe, work);
      samples.get(v.name)?.push(s);
      progress(`round ${r}/${rounds}: ${v.name}: ${fmtInt(s.updates / s.seconds)} updates/s`);
    }
  }
  const rows = prepared.map(({ v, work }) => {
    const ss = samples.get(v.name) ?? [];
    return {
      variant: v.name,
      commits: ss[0]?.commits ?? 0,
      updates: work.updates,
      usersPerCommit: work.updates / Math.max(1, ss[0]?.commits ?? 1),
      updatesPerSec: median(ss.map((s) => s.updates / s.seconds)),
      eventsPerSec: median(ss.map((s) => events / s.seconds)),
      nodeUsPerUpdate: median(ss.map((s) => s.nodeUs / s.updates)),
      redisUsPerUpdate: median(ss.map((s) => s.redisUs / s.updates)),
      msPerCommit: median(ss.map((s) => (1000 * s.seconds * v.lanes) / s.commits)),
      samples: ss,
    };
  });
  const finalMeta = finishMeta(meta);
  process.stdout.write(
    `\nBatch commit (LaneStore.commit), step results of ${fmtInt(events)} events, config/nudge.yaml, ${rounds} interleaved rounds (medians); ` +
      `Redis ${services.started.redis ? 'private' : 'shared (REDIS_URL: its CPU includes other clients)'}\n` +
      `${formatTable(
        ['variant', 'commits', 'users/commit', 'updates/s', 'events/s', 'Node µs/update', 'Redis µs/update', 'ms/commit'],
        rows.map((r) => [
          r.variant,
          fmtInt(r.commits),
          fmtInt(r.usersPerCommit),
          fmtInt(r.updatesPerSec),
          fmtInt(r.eventsPerSec),
          fmt(r.nodeUsPerUpdate, 2),
          fmt(r.redisUsPerUpdate, 2),
          fmt(r.msPerCommit, 2),
        ]),
      )}\n${loadLine(finalMeta)}\n`,
  );
  const file = await writeResult('commit', { bench: 'commit', meta: finalMeta, options: { events, rounds }, rows });
  progress(`wrote ${path.relative(REPO, file)}`);
}

main()
  .catch((err: unknown) => {
    if (interrupted()) return;
    process.stderr.write(`[bench] commit bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
