/**
 * One question: what does the whole pipeline (Kafka -> decode + validate -> lanes -> one Lua
 * commit per batch in Redis) cost per event, against a real Apache Kafka broker and a real
 * redis-server, compared with the floor of only reading and parsing the same events; and what
 * event-to-commit latency does it give at a steady 10,000 events/s?
 *
 * One run, three variants, each in its own forked Node process (so CPU time and peak RSS are
 * the variant's own; bench/support/child.ts):
 *   floor   KafkaSource (the engine's consume(1000) loop, same librdkafka tuning) + parseEvent on
 *           every message, a fresh group draining the pre-produced topic; no Redis.
 *   core    the Engine on the same config minus its `journeys` section (the streaming state core
 *           alone: no rules, no touch relay or workers), a fresh group and key namespace draining
 *           the same topic; done when every lane fence in Redis reaches the high watermark of
 *           its partition.
 *   drain   the same with the full shipped config/nudge.yaml (journeys, policy, touches; the
 *           backlog is older than maxTriggerAge, so rules run but event triggers do not fire).
 *   naive   the floor's consumer and decoder, then one awaited Redis command per event (GET the
 *           state, apply, SET, one HINCRBY per counter...: bench/support/naive-step.ts), for 20 s
 *           on the same topic: what a hand-written consumer costs end to end (issue 5).
 *   paced   the full Engine on an empty topic while this (parent) process produces live events
 *           at --rate (10,000/s) for --warmup-seconds + --paced-seconds; percentiles over the
 *           measured window only. With journeys on, also event-to-enqueue: a triggering event's
 *           send time to the creation of its touch's BullMQ job (waiting, not delayed).
 *   journeys (issue 4) the Engine without the journeys, with the playbook, and with the playbook
 *           but no delivery workers (they run as `nudge worker` at scale), alternating, on a
 *           backlog of fresh traffic (the last 30 minutes: triggers fire; with --interest-share
 *           0.05, fewer loan and fund page views than the load generator's default, ~0.9% of events
 *           become touches, the ~1% issue 4 names; 0.15 gives ~1.9%): throughput against the state
 *           core's in the same run, touches/s.
 * Floor, core and drain alternate for --rounds rounds and are reported as medians (the machine is
 * shared: a burst of someone else's load then hits both). Throughput and CPU are taken from the
 * first batch (floor) or commit (drain) past the first --warmup-share of the backlog (0.2) to the
 * first past 95% of it: group join and JIT warm-up are not in the rate, as in a sustained run, and
 * both ends of the window have work in flight (prefetched, in a lane) alike. V8's optimising
 * compiler keeps working for seconds after the first commit, on helper threads whose CPU counts
 * (with journeys on ~2x the core's compiler time, --trace-opt); with the window opening at the
 * first commit a 150,000-event drain put ~4 µs/event of compiler time on the playbook and ~1 on
 * the core. Peak RSS covers the whole process.
 *
 * Latency, exactly: the producer notes when it hands each event to librdkafka (that is also the
 * event's time), and its delivery report gives the offset and — the live topic is a
 * LogAppendTime topic — the broker's append time; the engine process records when Redis
 * acknowledged each batch's commit (bench/support/engine-run.ts recordCommits). An event's
 * latency is the acknowledgement of the first commit whose last offset covers it minus its send
 * time (the table), split into send -> append (producer linger, produce request, broker) and
 * append -> commit (fetch, consume batching, lanes, load, decide, commit: the engine's share).
 * The engine's own `nudge_event_to_commit_seconds` histogram is printed beside them: it observes
 * only the newest event of each batch (the one that waited least) from the append time and
 * interpolates within coarse buckets, so it reads low.
 *
 *   npm run bench:pipeline -- [--events 300000] [--partitions 4] [--users 50000] [--rate 10000]
 *       [--paced-seconds 20] [--warmup-seconds 3] [--config config/nudge.yaml]
 *       [--rounds 2] [--variants floor,core,drain,naive,journeys,paced] [--profile]
 *       [--node-flags=--max-semi-space-size=64]   (given to every measured process; note the =)
 *       [--bare-node]   (without the V8 flags bin/nudge.js gives the engine: src/cli/node-flags.ts;
 *                        with them by default, floor included)
 *       [--id-style short|uuid]   (event ids: the load generator's 6-10 characters, or UUIDs)
 *       [--warmup-share 0.2]   (share of each drain's backlog before its window opens)
 *       [--interest-share 0.05]   (journeys: share of sessions viewing loan, and fund, pages)
 * BENCH_EVENTS sets --events; KAFKA_BROKERS / REDIS_URL reuse running services (Redis CPU per
 * event then includes anyone else's load on that server). Prints one table; writes
 * bench/results/pipeline.json. --profile writes V8 CPU profiles of every variant's
 * process (summarise with `npx tsx bench/profile-summary.ts FILE`).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ENGINE_NODE_FLAGS } from '../src/cli/node-flags.js';
import kafka from '@confluentinc/kafka-javascript';
import type { DeliveryReport, LibrdKafkaError, ProducerGlobalConfig } from '@confluentinc/kafka-javascript';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { parseDocument } from 'yaml';
import { encodeEvent } from '../src/contract/event.js';
import { DEFAULT_EVENT_LIMITS, parseEvent } from '../src/contract/validate.js';
import { loadConfig } from '../src/config/load.js';
import { Engine } from '../src/engine/engine.js';
import { compileStateSpec } from '../src/engine/state-spec.js';
import { silentLogger } from '../src/log.js';
import { createMetricsRegistry } from '../src/metrics/registry.js';
import { EventProducer } from '../src/sources/event-producer.js';
import { KafkaSource } from '../src/sources/kafka-source.js';
import { laneKeys } from '../src/state/keys.js';
import { TrafficGenerator } from '../src/tools/loadgen/traffic.js';
import { produceBacklog } from './support/backlog.js';
import { BenchChild, childInput, exitChild, fromParent, toParent, type Message } from './support/child.js';
import {
  benchConfigFile,
  caughtUp,
  counterTotal,
  histogramBuckets,
  histogramDiff,
  histogramQuantile,
  readFences,
  reviveHistogram,
  recordCommits,
  type LaneCommits,
} from './support/engine-run.js';
import { createTopic, deleteTopics, highWatermarks, sumOf, uniqueName } from './support/kafka.js';
import { cpuMicros, mainThreadSched, nowMs, redisCpuSeconds, RssSampler, threadCpuDelta, threadCpuMicros, waitShare } from './support/measure.js';
import { finishMeta, fmt, fmtInt, formatTable, loadLine, median, progress, runMeta, writeResult } from './support/report.js';
import { naiveVariant, type NaiveInput } from './support/naive-variant.js';
import { benchServices, cleanup, interrupted, onCleanup } from './support/services.js';

const THIS_FILE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(THIS_FILE), '..');
const ZONE = 'Asia/Shanghai';
const TARGETS = { eventsPerSec: 50_000, cpuRatio: 2, p99Ms: 100, rssMb: 400 };
const IDLE_MS = 3_000;
const NAIVE_SECONDS = 20;
/** Drains are measured up to this share of their backlog (the window's end; its start is --warmup-share). */
const WINDOW_END = 0.95;

interface Options {
  events: number;
  partitions: number;
  users: number;
  seed: number;
  spanDays: number;
  rate: number;
  pacedSeconds: number;
  warmupSeconds: number;
  rounds: number;
  config: string;
  variants: Set<string>;
  profile: boolean;
  /** Node/V8 flags for every measured process, floor included: the engine's launch flags, then --node-flags. */
  nodeFlags: string[];
  /** Share of a drain's backlog before its measured window opens (JIT warm-up), every drain variant alike. */
  warmupShare: number;
  /** Event ids of the generated traffic: the load generator's short ones, or UUIDs as real producers send. */
  idStyle: 'short' | 'uuid';
  /**
   * The journeys variant's traffic: the share of sessions that look at loan (and at fund) pages,
   * which sets most of the playbook's touch rate. 0.05 gives the ~1% issue 4 names; the load
   * generator's default, 0.15, ~1.9%.
   */
  interestShare: number;
}

// ---------------------------------------------------------------------------------------------
// Variant processes
// ---------------------------------------------------------------------------------------------

type ChildInput =
  | { variant: 'floor'; brokers: string; topic: string; groupId: string; ends: Array<[number, number]>; configFile: string; warmupEvents: number; windowEndEvents: number }
  | { variant: 'drain'; redisUrl: string; namespace: string; topic: string; ends: Array<[number, number]>; configFile: string; workers?: boolean; warmupEvents: number; windowEndEvents: number }
  | { variant: 'paced'; redisUrl: string; namespace: string; topic: string; partitions: number; configFile: string }
  | NaiveInput;

/** What a drain variant reports: the measured window and the process's peak RSS. */
interface DrainResult extends Message {
  type: 'result';
  events: number;
  seconds: number;
  cpuUs: number;
  redisCpuUs: number | null;
  peakRssMb: number;
  /** From start() to the window's opening (past --warmup-share of the backlog): join + warm-up. */
  startupSeconds: number;
  extra: Record<string, number | Record<string, number>>;
}

interface Mark {
  at: number;
  cpuUs: number;
  sched: ReturnType<typeof mainThreadSched>;
  redisCpuS: number;
  histogram: Array<[number, number]>;
  touchesRelayed: number;
  touchDeliveries: number;
}

interface PacedResult extends Message {
  type: 'result';
  marks: Mark[];
  commits: Array<[number, LaneCommits]>;
  exact: boolean;
  peakRssMb: number;
  /** CPU ms per second of wall time with the engine idle (no traffic), Node and Redis. */
  idle: { nodeMsPerSec: number; redisMsPerSec: number };
}

async function childMain(input: ChildInput): Promise<void> {
  const rss = new RssSampler().start(100);
  if (input.variant === 'floor') await toParent(await floorVariant(input, rss));
  else if (input.variant === 'drain') await toParent(await drainVariant(input, rss));
  else if (input.variant === 'naive') await toParent(await naiveVariant(input, rss));
  else await pacedVariant(input, rss);
  exitChild(0);
}

async function floorVariant(input: Extract<ChildInput, { variant: 'floor' }>, rss: RssSampler): Promise<DrainResult> {
  const config = loadConfig({ file: input.configFile, env: {} });
  const limits = { ...DEFAULT_EVENT_LIMITS, ...config.events };
  const ends = new Map(input.ends);
  const total = sumOf(ends);
  const source = new KafkaSource({
    connection: { 'bootstrap.servers': input.brokers },
    topic: input.topic,
    groupId: input.groupId,
    logger: silentLogger(),
  });
  const empty = Buffer.alloc(0);
  const started = nowMs();
  let t0 = 0;
  let cpu0 = 0;
  let seen = 0;
  let opened = 0;
  let counted = 0;
  let invalid = 0;
  let sched0: ReturnType<typeof mainThreadSched> = null;
  let threads0: Record<string, number> = {};
  let finish: (r: { t1: number; cpu1: number; sched1: ReturnType<typeof mainThreadSched>; threads1: Record<string, number> }) => void = () => {};
  let fail: (err: Error) => void = () => {};
  const done = new Promise<{ t1: number; cpu1: number; sched1: ReturnType<typeof mainThreadSched>; threads1: Record<string, number> }>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  await source.start({
    onAssigned: () => {},
    onRevoked: () => {},
    onBatch: async (batch) => {
      // The first batch past the warm-up (JIT) opens the window; the events after it are counted.
      const now = Date.now();
      for (const m of batch.messages) if (!parseEvent(m.value ?? empty, limits, now).ok) invalid++;
      seen += batch.messages.length;
      // The window opens after the batch that takes the count past the warm-up and closes after
      // the one that takes it past WINDOW_END of the backlog, both at a batch's end: what was
      // fetched ahead before the window opened is matched by what is fetched ahead before it
      // closes (reading to the very end, with nothing left to fetch, would not be).
      if (t0 === 0) {
        if (seen >= input.warmupEvents) {
          t0 = nowMs();
          cpu0 = cpuMicros();
          sched0 = mainThreadSched();
          threads0 = threadCpuMicros();
          opened = seen;
          if (seen >= total) fail(new Error(`the floor's window opened on the last batch (${fmtInt(total)} events): give more --events or a smaller --warmup-share`));
        }
      } else if ((seen >= input.windowEndEvents || seen >= total) && counted === 0) {
        counted = seen - opened;
        finish({ t1: nowMs(), cpu1: cpuMicros(), sched1: mainThreadSched(), threads1: threadCpuMicros() });
      }
    },
  });
  const { t1, cpu1, sched1, threads1 } = await done;
  await source.stop();
  return {
    type: 'result',
    events: counted,
    seconds: (t1 - t0) / 1000,
    cpuUs: cpu1 - cpu0,
    redisCpuUs: null,
    peakRssMb: rss.stop(),
    startupSeconds: (t0 - started) / 1000,
    extra: { invalid, cpuWaitShare: waitShare(sched0, sched1, t1 - t0), threadCpuUs: threadCpuDelta(threads0, threads1) },
  };
}

function engineFor(configFile: string, workers = true): { engine: Engine; registry: ReturnType<typeof createMetricsRegistry>; config: ReturnType<typeof loadConfig> } {
  const config = loadConfig({ file: configFile, env: {} });
  const registry = createMetricsRegistry();
  const engine = new Engine({ config, spec: compileStateSpec(config), logger: silentLogger(), registry, http: false, workers });
  return { engine, registry, config };
}

async function drainVariant(input: Extract<ChildInput, { variant: 'drain' }>, rss: RssSampler): Promise<DrainResult> {
  const ends = new Map(input.ends);
  const partitions = [...ends.keys()];
  const probe = new Redis(input.redisUrl);
  const { engine, registry } = engineFor(input.configFile, input.workers ?? true);
  const started = nowMs();
  await engine.start();
  let first: { t: number; cpu: number; redis: number; applied: number; sched: ReturnType<typeof mainThreadSched>; threads: Record<string, number> } | null = null;
  let last: { t: number; cpu: number; redis: number; applied: number; sched: ReturnType<typeof mainThreadSched>; threads: Record<string, number> } | null = null;
  // Polling the fences (10 ms) costs ~100 small pipelines a second: noise next to the engine.
  for (;;) {
    const fences = await readFences(probe, input.namespace, input.topic, partitions);
    const applied = [...fences.values()].reduce((sum, o) => sum + o + 1, 0);
    // The window opens at the first commit past the warm-up (JIT: V8 goes on optimising the
    // engine's code for seconds, more of it with journeys on).
    if (first === null && applied > 0 && applied >= input.warmupEvents) {
      const t = nowMs();
      const cpu = cpuMicros();
      const sched = mainThreadSched();
      first = { t, cpu, sched, threads: threadCpuMicros(), redis: await redisCpuSeconds(probe), applied };
    }
    // The window closes past WINDOW_END of the backlog, with batches in flight as when it
    // opened (closing at the very end would leave the opening's in-flight work out and none
    // at the close); the drain then goes on to the end (touches and stores are counted after).
    if (first !== null && last === null && applied >= input.windowEndEvents && applied > first.applied) {
      const t = nowMs();
      const cpu = cpuMicros();
      const sched = mainThreadSched();
      last = { t, cpu, sched, threads: threadCpuMicros(), redis: await redisCpuSeconds(probe), applied };
    }
    if (caughtUp(fences, ends)) {
      if (last === null) throw new Error('the drain caught up before its measured window closed: give more --events or a smaller --warmup-share');
      break;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  if (first === null || last === null) throw new Error('unreachable: the loop leaves with both ends of the window');
  const batchSize = await histogramBuckets(registry, 'nudge_batch_size_events');
  const batches = batchSize[batchSize.length - 1]?.[1] ?? 0;
  const memory = await probe.info('memory');
  await engine.stop();
  await probe.quit();
  return {
    type: 'result',
    events: last.applied - first.applied,
    seconds: (last.t - first.t) / 1000,
    cpuUs: last.cpu - first.cpu,
    redisCpuUs: (last.redis - first.redis) * 1e6,
    peakRssMb: rss.stop(),
    startupSeconds: (first.t - started) / 1000,
    extra: {
      batches,
      meanBatch: batches > 0 ? sumOf(ends) / batches : 0,
      redisUsedMemoryMb: Number(/^used_memory:(\d+)/m.exec(memory)?.[1] ?? NaN) / 1e6,
      cpuWaitShare: waitShare(first.sched, last.sched, last.t - first.t),
      threadCpuUs: threadCpuDelta(first.threads, last.threads),
      // The shipped config has journeys: touches relayed to BullMQ and delivered by the workers
      // this process runs (a backlog older than maxTriggerAge triggers none by event).
      touchesRelayed: await counterTotal(registry, 'nudge_touch_relayed_total'),
      touchDeliveries: await counterTotal(registry, 'nudge_touch_deliveries_total'),
    },
  };
}

async function pacedVariant(input: Extract<ChildInput, { variant: 'paced' }>, rss: RssSampler): Promise<void> {
  const partitions = Array.from({ length: input.partitions }, (_, i) => i);
  const probe = new Redis(input.redisUrl);
  const { engine, registry } = engineFor(input.configFile);
  const commits = new Map<number, LaneCommits>();
  const exact = recordCommits(engine, input.namespace, input.topic, partitions, commits);
  const marks: Mark[] = [];
  const markQueue: Array<Promise<void>> = [];
  // The window's bounds are the parent's clock readings (events are windowed by send time); the
  // CPU and Redis readings are taken here when the mark arrives, a few ms later at most.
  fromParent<Message & { at: number }>('mark', ({ at }) => {
    const cpuUs = cpuMicros();
    const sched = mainThreadSched();
    markQueue.push(
      Promise.all([
        redisCpuSeconds(probe),
        histogramBuckets(registry, 'nudge_event_to_commit_seconds'),
        counterTotal(registry, 'nudge_touch_relayed_total'),
        counterTotal(registry, 'nudge_touch_deliveries_total'),
      ]).then(([redisCpuS, histogram, touchesRelayed, touchDeliveries]) => {
        marks.push({ at, cpuUs, sched, redisCpuS, histogram, touchesRelayed, touchDeliveries });
      }),
    );
  });
  const drained = new Promise<Map<number, number>>((resolve) => fromParent<Message & { ends: Array<[number, number]> }>('drain', (m) => resolve(new Map(m.ends))));
  await engine.start();
  while (engine.ownedPartitions().length < input.partitions) await new Promise((r) => setTimeout(r, 20));
  // What the engine costs with no traffic at all (timer sweep, touch workers and relay polling,
  // lag probes, metrics): at a paced rate this is spread over the events, at a backlog it is not.
  await new Promise((r) => setTimeout(r, 1_000));
  const idle0 = { t: nowMs(), cpu: cpuMicros(), redis: await redisCpuSeconds(probe) };
  await new Promise((r) => setTimeout(r, IDLE_MS));
  const idle1 = { t: nowMs(), cpu: cpuMicros(), redis: await redisCpuSeconds(probe) };
  const idle = { nodeMsPerSec: (idle1.cpu - idle0.cpu) / (idle1.t - idle0.t), redisMsPerSec: ((idle1.redis - idle0.redis) * 1e6) / (idle1.t - idle0.t) };
  await toParent({ type: 'ready' });
  const ends = await drained;
  while (!caughtUp(await readFences(probe, input.namespace, input.topic, partitions), ends)) await new Promise((r) => setTimeout(r, 20));
  await Promise.all(markQueue);
  marks.sort((a, b) => a.at - b.at);
  await engine.stop();
  await probe.quit();
  const result: PacedResult = { type: 'result', marks, commits: [...commits], exact, peakRssMb: rss.stop(), idle };
  await toParent(result);
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

interface Row {
  variant: string;
  events: number;
  eventsPerSec: number;
  nodeUsPerEvent: number;
  redisUsPerEvent: number | null;
  ratioVsFloor: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  peakRssMb: number;
  notes: Record<string, number | string | boolean>;
}

function idStyleOf(raw: string): 'short' | 'uuid' {
  if (raw === 'short' || raw === 'uuid') return raw;
  throw new Error(`--id-style must be short or uuid, got ${raw}`);
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      events: { type: 'string' },
      partitions: { type: 'string', default: '4' },
      users: { type: 'string', default: '50000' },
      seed: { type: 'string', default: '20260301' },
      'span-days': { type: 'string', default: '3' },
      rate: { type: 'string', default: '10000' },
      'paced-seconds': { type: 'string', default: '20' },
      'warmup-seconds': { type: 'string', default: '3' },
      rounds: { type: 'string', default: '2' },
      config: { type: 'string', default: path.join(REPO, 'config', 'nudge.yaml') },
      variants: { type: 'string', default: 'floor,core,drain,naive,journeys,paced' },
      profile: { type: 'boolean', default: false },
      'node-flags': { type: 'string', default: '' },
      'bare-node': { type: 'boolean', default: false },
      'id-style': { type: 'string', default: 'short' },
      'warmup-share': { type: 'string', default: '0.2' },
      'interest-share': { type: 'string', default: '0.05' },
    },
  });
  const num = (name: string, raw: string | undefined, min: number): number => {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}, got ${raw}`);
    return n;
  };
  return {
    events: num('events', values.events ?? process.env.BENCH_EVENTS ?? '300000', 1_000),
    partitions: num('partitions', values.partitions, 1),
    users: num('users', values.users, 10),
    seed: num('seed', values.seed, 0),
    spanDays: num('span-days', values['span-days'], 0.01),
    rate: num('rate', values.rate, 1),
    pacedSeconds: num('paced-seconds', values['paced-seconds'], 1),
    warmupSeconds: num('warmup-seconds', values['warmup-seconds'], 0),
    rounds: num('rounds', values.rounds, 1),
    config: path.resolve(values.config),
    variants: new Set(values.variants.split(',').map((v) => v.trim())),
    profile: values.profile,
    // The engine's launch flags (src/cli/node-flags.ts), as bin/nudge.js runs it, unless --bare-node.
    nodeFlags: [...(values['bare-node'] ? [] : ENGINE_NODE_FLAGS), ...values['node-flags'].split(/\s+/).filter((f) => f !== '')],
    idStyle: idStyleOf(values['id-style']),
    warmupShare: Math.min(0.9, num('warmup-share', values['warmup-share'], 0)),
    interestShare: Math.min(1, num('interest-share', values['interest-share'], 0)),
  };
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const meta = runMeta();
  const services = await benchServices();
  const run = randomBytes(3).toString('hex');
  const topic = uniqueName('bench.pipeline');
  const live = `${topic}.live`;
  const namespace = `bench${run}`;
  const topics = [topic, `${topic}.dlq`, live, `${live}.dlq`];
  onCleanup(() => deleteTopics(services.brokers, topics));
  onCleanup(() => dropNamespace(services.redisUrl, namespace));
  await Promise.all([createTopic(services.brokers, topic, o.partitions), createTopic(services.brokers, `${topic}.dlq`, 1)]);

  const backlog = await produceBacklog({
    brokers: services.brokers,
    topic,
    events: o.events,
    users: o.users,
    seed: o.seed,
    spanDays: o.spanDays,
    reportingTimeZone: ZONE,
    idStyle: o.idStyle,
  });
  const ends = await highWatermarks(services.brokers, topic);
  const total = sumOf(ends);
  const warmupEvents = Math.floor(o.warmupShare * total);
  const windowEndEvents = Math.floor(WINDOW_END * total);
  const target = (t: string, groupId: string) => ({ brokers: services.brokers, redisUrl: services.redisUrl, topic: t, groupId, namespace });
  const profileDir = path.join(tmpdir(), `nudge-bench-profiles-${run}`);
  // One directory per variant, files named by Node: tsx's loader thread writes a profile too, and a
  // fixed --cpu-prof-name would let it overwrite the main thread's (the larger file is the main one).
  const profileArgs = (name: string): string[] => [...o.nodeFlags, ...(o.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.join(profileDir, name)}`] : [])];
  if (o.profile) await mkdir(profileDir, { recursive: true });

  const rows: Row[] = [];
  // Floor, core and drain alternate for --rounds rounds (a burst of other load on the machine then hits
  // both) and are reported as medians; each drain round gets its own key namespace, since a lane
  // whose fence is already at the end would skip the whole backlog.
  const samples = { floor: [] as DrainResult[], core: [] as DrainResult[], drain: [] as DrainResult[] };
  for (let round = 1; round <= o.rounds; round++) {
    const of = `round ${round}/${o.rounds}`;
    const profile = (name: string) => profileArgs(o.rounds > 1 ? `${name}-${round}` : name);
    if (o.variants.has('floor')) {
      progress(`${of} floor: KafkaSource consume(1000) + parseEvent, fresh group, ${fmtInt(total)} events...`);
      const groupId = uniqueName('bench-floor');
      const configFile = await benchConfigFile(o.config, target(topic, groupId));
      const r = await runDrainChild({ variant: 'floor', brokers: services.brokers, topic, groupId, ends: [...ends], configFile, warmupEvents, windowEndEvents }, profile('floor'));
      progress(`  ${fmtInt(r.events / r.seconds)} events/s, ${fmt(r.cpuUs / r.events, 2)} µs/event${threadShares(r)}`);
      samples.floor.push(r);
    }
    for (const [variant, journeys] of [['core', false], ['drain', true]] as const) {
      if (!o.variants.has(variant)) continue;
      progress(`${of} ${variant}: Engine${journeys ? '' : ' without journeys'}, fresh group and key namespace, ${fmtInt(total)} events backlog...`);
      const ns = `${namespace}${variant[0]}${round}`;
      onCleanup(() => dropNamespace(services.redisUrl, ns));
      const configFile = await benchConfigFile(o.config, { ...target(topic, uniqueName(`bench-${variant}`)), namespace: ns }, { journeys });
      const r = await runDrainChild({ variant: 'drain', redisUrl: services.redisUrl, namespace: ns, topic, ends: [...ends], configFile, warmupEvents, windowEndEvents }, profile(variant));
      progress(`  ${fmtInt(r.events / r.seconds)} events/s, ${fmt(r.cpuUs / r.events, 2)} µs/event${threadShares(r)}`);
      samples[variant].push(r);
    }
  }
  const floorUs = samples.floor.length > 0 ? median(samples.floor.map((r) => r.cpuUs / r.events)) : null;
  if (samples.floor.length > 0) rows.push(drainRow('floor: consume + parse', samples.floor, null));
  if (samples.core.length > 0) rows.push(drainRow('engine, no journeys: drain', samples.core, floorUs));
  if (samples.drain.length > 0) rows.push(drainRow('engine: drain backlog', samples.drain, floorUs));
  if (o.variants.has('naive')) {
    // Issue 5: the same topic through the engine's consumer and decoder, then one awaited Redis
    // command per event (bench/support/naive-variant.ts). ~50× slower: measured for a fixed
    // time, one round, on the built-in state config (no journeys: it models the state step only).
    progress(`naive: KafkaSource + parseEvent, then GET/apply/SET/HINCRBY... per event, awaited, for ${NAIVE_SECONDS} s...`);
    const ns = `${namespace}n`;
    onCleanup(() => dropNamespace(services.redisUrl, ns));
    const groupId = uniqueName('bench-naive');
    const configFile = await benchConfigFile(o.config, { ...target(topic, groupId), namespace: ns }, { journeys: false });
    const r = (await runDrainChild({ variant: 'naive', brokers: services.brokers, redisUrl: services.redisUrl, topic, groupId, namespace: ns, configFile, ends: [...ends], seconds: NAIVE_SECONDS }, profileArgs('naive'))) as DrainResult;
    progress(`  ${fmtInt(r.events / r.seconds)} events/s, ${fmt(r.cpuUs / r.events, 2)} µs/event`);
    rows.push(drainRow('naive: one awaited command per event', [r], floorUs));
  }
  // Journeys (issue 4): the playbook on fresh traffic against the state core, same run.
  if (o.variants.has('journeys')) {
    const fresh = `${topic}.fresh`;
    topics.push(fresh, `${fresh}.dlq`);
    await Promise.all([createTopic(services.brokers, fresh, o.partitions), createTopic(services.brokers, `${fresh}.dlq`, 1)]);
    await produceFreshBacklog(services.brokers, fresh, o);
    rows.push(...journeysRows(await runJourneysDrain(o, services, namespace, fresh, profileArgs), floorUs));
  }
  if (o.variants.has('paced')) {
    // The broker stamps each message with its append time, which the producer's delivery report
    // returns: the latency then splits into producer -> broker and broker -> committed state.
    await Promise.all([
      createTopic(services.brokers, live, o.partitions, { 'message.timestamp.type': 'LogAppendTime' }),
      createTopic(services.brokers, `${live}.dlq`, 1),
    ]);
    // Journeys (issue 4): the paced run's own touch queue, and each measured event's send time.
    const pacedQueue = `bench-touches-${namespace}P`;
    onCleanup(() => dropNamespace(services.redisUrl, `bull:${pacedQueue}`));
    const configFile = await withTouchQueue(await benchConfigFile(o.config, target(live, uniqueName('bench-paced'))), pacedQueue);
    const sentAt = new Map<string, number>();
    const row = await runPaced(o, services.brokers, { variant: 'paced', redisUrl: services.redisUrl, namespace, topic: live, partitions: o.partitions, configFile }, floorUs, profileArgs('paced'), sentAt);
    const { jobs, outbox } = await touchesDecided(services.redisUrl, pacedQueue, namespace, live, Array.from({ length: o.partitions }, (_, i) => i));
    Object.assign(row.notes, enqueueLatency(jobs, sentAt, o.pacedSeconds), { touchesNotRelayed: outbox });
    rows.push(row);
  }

  const finalMeta = finishMeta(meta);
  const title =
    `Pipeline, ${fmtInt(total)} events of ~${backlog.avgBytes} B${o.idStyle === 'uuid' ? ' (UUID event ids)' : ''}, ${o.partitions} partitions, ${fmtInt(o.users)} users, ` +
    `config ${path.relative(REPO, o.config)}; Kafka ${services.started.kafka ? 'private' : 'shared (KAFKA_BROKERS)'}, ` +
    `Redis ${services.started.redis ? 'private' : 'shared (REDIS_URL: its CPU includes other clients)'}` +
    `; node ${o.nodeFlags.length > 0 ? o.nodeFlags.join(' ') : 'without flags'}; windows open past the first ${Math.round(100 * o.warmupShare)} % of each drain`;
  const table = formatTable(
    ['variant', 'events', 'events/s', 'Node µs/ev', 'Redis µs/ev', '× floor', 'p50 ms', 'p99 ms', 'peak RSS MB'],
    rows.map((r) => [
      r.variant,
      fmtInt(r.events),
      fmtInt(r.eventsPerSec),
      fmt(r.nodeUsPerEvent, 2),
      fmt(r.redisUsPerEvent, 2),
      r.ratioVsFloor === null ? '–' : `${fmt(r.ratioVsFloor, 2)}×`,
      fmt(r.p50Ms, 1),
      fmt(r.p99Ms, 1),
      fmtInt(r.peakRssMb),
    ]),
  );
  const verdicts = [...targetVerdicts(rows), ...journeysVerdicts(rows)];
  process.stdout.write(`\n${title}\n${table}\n`);
  for (const v of verdicts) process.stdout.write(`${v}\n`);
  const paced = rows.find((r) => r.variant.startsWith('engine: paced'));
  if (paced) {
    const n = (k: string) => fmt(paced.notes[k] as number, 1);
    process.stdout.write(
      `paced latency split: producer -> broker append p50 ${n('brokerP50Ms')} / p99 ${n('brokerP99Ms')} ms; ` +
        `broker append -> state committed p50 ${n('engineP50Ms')} / p99 ${n('engineP99Ms')} ms; ` +
        `the engine's own nudge_event_to_commit_seconds (newest event per batch, from the append time, bucket-interpolated) ` +
        `p50 ${n('histogramP50Ms')} / p99 ${n('histogramP99Ms')} ms; idle engine (no traffic) ${n('idleNodeMsPerSec')} ms CPU/s in Node, ` +
        `${n('idleRedisMsPerSec')} ms/s in Redis\n`,
    );
  }
  const on = rows.find((r) => r.variant === 'fresh: engine + playbook');
  if (on) process.stdout.write(`playbook on fresh traffic: ${fmtInt(on.notes['touches'] as number)} touches (${fmt(on.notes['touchRatePct'] as number, 2)} % of events), ${fmt(on.notes['touchesPerSec'] as number, 0)} touches/s, ${fmt(100 * (on.notes['throughputVsCore'] as number), 0)} % of the state core's events/s\n`);
  if (paced && typeof paced.notes['enqueueP99Ms'] === 'number') {
    const n = (k: string) => fmt(paced.notes[k] as number, 1);
    process.stdout.write(`paced event-to-enqueue (waiting job created - event sent): p50 ${n('enqueueP50Ms')} / p99 ${n('enqueueP99Ms')} / max ${n('enqueueMaxMs')} ms over ${fmtInt(paced.notes['touchesInWindow'] as number)} touches (${n('touchesPerSec')}/s; ${fmtInt(paced.notes['delayedTouches'] as number)} delayed on purpose, ${fmtInt(paced.notes['touchesNotRelayed'] as number)} left in the outbox)\n`);
  }
  const waits = rows.filter((r) => typeof r.notes['cpuWaitShare'] === 'number' && Number.isFinite(r.notes['cpuWaitShare']));
  if (waits.length > 0) {
    process.stdout.write(
      `main JS thread runnable but waiting for a CPU (/proc/self/schedstat; others' load): ` +
        `${waits.map((r) => `${r.variant} ${fmt(100 * (r.notes['cpuWaitShare'] as number), 0)} %`).join(', ')} of the measured time\n`,
    );
  }
  process.stdout.write(`${loadLine(finalMeta)}\n`);
  if (o.profile) process.stdout.write(`CPU profiles: ${profileDir} (npx tsx bench/profile-summary.ts FILE)\n`);
  const file = await writeResult('pipeline', { bench: 'pipeline', meta: finalMeta, options: { ...o, variants: [...o.variants] }, backlog, targets: TARGETS, rows, verdicts });
  progress(`wrote ${path.relative(REPO, file)}`);
}

async function runDrainChild(input: ChildInput, execArgv: string[]): Promise<DrainResult> {
  const child = new BenchChild(THIS_FILE, input, { execArgv });
  try {
    return await child.next<DrainResult>('result', 170_000);
  } finally {
    await child.close();
  }
}

/** Medians over the rounds of a drain-type variant; every round is kept in `notes.rounds`. */
function drainRow(variant: string, rs: DrainResult[], floorUs: number | null): Row {
  const nodeUs = median(rs.map((r) => r.cpuUs / r.events));
  const redis = rs.flatMap((r) => (r.redisCpuUs === null ? [] : [r.redisCpuUs / r.events]));
  const extras = Object.keys(rs[0]?.extra ?? {}).filter((k) => typeof rs[0]?.extra[k] === 'number');
  const threads = [...new Set(rs.flatMap((r) => Object.keys(threadsOf(r))))];
  return {
    variant,
    events: median(rs.map((r) => r.events)),
    eventsPerSec: median(rs.map((r) => r.events / r.seconds)),
    nodeUsPerEvent: nodeUs,
    redisUsPerEvent: redis.length > 0 ? median(redis) : null,
    ratioVsFloor: floorUs === null ? null : nodeUs / floorUs,
    p50Ms: null,
    p99Ms: null,
    peakRssMb: Math.max(...rs.map((r) => r.peakRssMb)),
    notes: {
      rounds: rs
        .map((r) => `${Math.round(r.events / r.seconds)} ev/s ${round3(r.cpuUs / r.events)} µs/ev${r.redisCpuUs === null ? '' : ` redis ${round3(r.redisCpuUs / r.events)}`}`)
        .join('; '),
      startupSeconds: round3(median(rs.map((r) => r.startupSeconds))),
      ...Object.fromEntries(extras.map((k) => [k, round3(median(rs.map((r) => (r.extra[k] as number | undefined) ?? NaN)))])),
      ...(threads.length > 0 ? { threadUsPerEvent: threads.map((t) => `${t} ${round3(median(rs.map((r) => (threadsOf(r)[t] ?? 0) / r.events)))}`).join(', ') } : {}),
    },
  };
}

/**
 * Produces live events at a fixed rate (counted, not the generator's daily rhythm) with the
 * send time as both the message timestamp and the event time, while the engine process runs.
 */
async function runPaced(
  o: Options,
  brokers: string,
  input: Extract<ChildInput, { variant: 'paced' }>,
  floorUs: number | null,
  execArgv: string[],
  /** Journeys (issue 4): filled with the send time of each event sent in the measured window. */
  sentAtById?: Map<string, number>,
): Promise<Row> {
  const child = new BenchChild(THIS_FILE, input, { execArgv });
  try {
    await child.next('ready', 120_000);
    const byLane = new Map<number, SentLane>();
    let delivered = 0;
    let failed = 0;
    const producer = new kafka.Producer({
      'bootstrap.servers': brokers,
      // As EventProducer: idempotent, acks=all, 5 ms linger, lz4.
      'enable.idempotence': true,
      acks: 'all',
      'linger.ms': 5,
      'compression.type': 'lz4',
      dr_cb: true,
    } as ProducerGlobalConfig);
    producer.on('delivery-report', (err: LibrdKafkaError, r: DeliveryReport) => {
      if (err) {
        failed++;
        return;
      }
      delivered++;
      let lane = byLane.get(r.partition);
      if (lane === undefined) byLane.set(r.partition, (lane = { offsets: [], sentAt: [], appendedAt: [] }));
      lane.offsets.push(r.offset);
      lane.sentAt.push(r.opaque as number);
      lane.appendedAt.push(r.timestamp ?? NaN);
    });
    await new Promise<void>((resolve, reject) => producer.connect({ timeout: 30_000 }, (err) => (err ? reject(err) : resolve())));
    producer.setPollInterval(50);
    const generator = new TrafficGenerator({ seed: o.seed + 1, users: o.users, ratePerSec: o.rate, startMs: Date.now(), reportingTimeZone: ZONE, idStyle: o.idStyle });
    progress(`paced: producing ${fmtInt(o.rate)} events/s for ${o.warmupSeconds} s warm-up + ${o.pacedSeconds} s measured...`);
    const start = Date.now();
    const windowStart = start + o.warmupSeconds * 1000;
    const windowEnd = windowStart + o.pacedSeconds * 1000;
    let sent = 0;
    let marked = false;
    let lastProgress = start;
    for (;;) {
      const now = Date.now();
      if (!marked && now >= windowStart) {
        child.send({ type: 'mark', at: now });
        marked = true;
      }
      if (now >= windowEnd) break;
      const due = Math.floor(((now - start) * o.rate) / 1000);
      while (sent < due) {
        const ts = Date.now();
        const { event } = generator.next();
        const value = Buffer.from(encodeEvent({ ...event, timeMs: ts, sentMs: ts }));
        producer.produce(input.topic, null, value, event.userId, ts, ts);
        if (sentAtById !== undefined && marked) sentAtById.set(event.eventId, ts);
        sent++;
      }
      if (now - lastProgress >= 5_000) {
        lastProgress = now;
        progress(`paced: ${fmtInt(sent)} produced, ${fmtInt(delivered)} acknowledged`);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    child.send({ type: 'mark', at: Date.now() });
    await new Promise<void>((resolve, reject) => producer.flush(30_000, (err) => (err ? reject(err) : resolve())));
    while (delivered + failed < sent) await new Promise((r) => setTimeout(r, 20));
    await new Promise<void>((resolve) => producer.disconnect(10_000, () => resolve()));
    if (failed > 0) throw new Error(`${failed} paced events were not delivered`);
    const ends = await highWatermarks(brokers, input.topic);
    child.send({ type: 'drain', ends: [...ends] });
    const r = await child.next<PacedResult>('result', 120_000);
    return pacedRow(o, r, byLane, floorUs);
  } finally {
    await child.close();
  }
}

interface SentLane {
  offsets: number[];
  /** When the producer was handed the event (also its event time). */
  sentAt: number[];
  /** The broker's append time (LogAppendTime topic), from the delivery report. */
  appendedAt: number[];
}

function pacedRow(o: Options, r: PacedResult, sent: Map<number, SentLane>, floorUs: number | null): Row {
  const [m0, m1] = r.marks;
  if (m0 === undefined || m1 === undefined) throw new Error('the engine process did not record the measurement window');
  const commits = new Map(r.commits);
  const total: number[] = [];
  const broker: number[] = [];
  const engine: number[] = [];
  const perSecond: number[][] = Array.from({ length: Math.ceil((m1.at - m0.at) / 1000) }, () => []);
  let uncommitted = 0;
  for (const [partition, lane] of sent) {
    const log = commits.get(partition) ?? { last: [], at: [] };
    for (let i = 0; i < lane.offsets.length; i++) {
      const sentAt = lane.sentAt[i] as number;
      if (sentAt < m0.at || sentAt >= m1.at) continue;
      const appendedAt = lane.appendedAt[i] as number;
      const at = commitTimeOf(log, lane.offsets[i] as number);
      if (at === null) {
        uncommitted++;
        continue;
      }
      total.push(at - sentAt);
      broker.push(appendedAt - sentAt);
      engine.push(at - appendedAt);
      perSecond[Math.floor((sentAt - m0.at) / 1000)]?.push(at - sentAt);
    }
  }
  const events = total.length + uncommitted;
  const window = histogramDiff(reviveHistogram(m0.histogram), reviveHistogram(m1.histogram));
  const nodeUs = (m1.cpuUs - m0.cpuUs) / events;
  return {
    variant: `engine: paced ${fmtInt(o.rate)}/s`,
    events,
    eventsPerSec: events / ((m1.at - m0.at) / 1000),
    nodeUsPerEvent: nodeUs,
    redisUsPerEvent: ((m1.redisCpuS - m0.redisCpuS) * 1e6) / events,
    ratioVsFloor: floorUs === null ? null : nodeUs / floorUs,
    p50Ms: r.exact ? quantile(total, 0.5) : null,
    p99Ms: r.exact ? quantile(total, 0.99) : null,
    peakRssMb: r.peakRssMb,
    notes: {
      exactLatency: r.exact,
      p999Ms: quantile(total, 0.999) ?? NaN,
      maxMs: quantile(total, 1) ?? NaN,
      uncommitted,
      // Producer hand-over -> broker append: linger.ms, the produce request, the broker's append.
      brokerP50Ms: quantile(broker, 0.5) ?? NaN,
      brokerP99Ms: quantile(broker, 0.99) ?? NaN,
      // Broker append -> state committed in Redis: fetch, consume batching, lanes, load, decide, commit.
      engineP50Ms: quantile(engine, 0.5) ?? NaN,
      engineP99Ms: quantile(engine, 0.99) ?? NaN,
      histogramP50Ms: histogramQuantile(0.5, window) * 1000,
      histogramP99Ms: histogramQuantile(0.99, window) * 1000,
      batchesInWindow: window[window.length - 1]?.[1] ?? 0,
      cpuWaitShare: waitShare(m0.sched, m1.sched, m1.at - m0.at),
      // Journeys of the shipped config fire on live events: touches go through BullMQ to the
      // workers in the engine process, ~150 µs of CPU each (perf-anchors §0.4), in the figures.
      idleNodeMsPerSec: round3(r.idle.nodeMsPerSec),
      idleRedisMsPerSec: round3(r.idle.redisMsPerSec),
      touchesRelayedInWindow: m1.touchesRelayed - m0.touchesRelayed,
      touchDeliveriesInWindow: m1.touchDeliveries - m0.touchDeliveries,
      // p99 of each second of the window: a stall shows as one bad second, a slow pipeline as all.
      p99BySecondMs: perSecond
        .filter((xs) => xs.length > 0)
        .map((xs) => quantile(xs, 0.99))
        .join(' '),
    },
  };
}

/** The q-quantile (nearest rank) of the values; sorts them in place. */
function quantile(xs: number[], q: number): number | null {
  if (xs.length === 0) return null;
  xs.sort((a, b) => a - b);
  return xs[Math.min(xs.length - 1, Math.floor(q * xs.length))] as number;
}

/** When the commit covering `offset` was acknowledged: the first commit whose last offset is >= it. */
function commitTimeOf(log: LaneCommits, offset: number): number | null {
  let lo = 0;
  let hi = log.last.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((log.last[mid] as number) < offset) lo = mid + 1;
    else hi = mid;
  }
  return lo < log.at.length ? (log.at[lo] as number) : null;
}

function targetVerdicts(rows: Row[]): string[] {
  const out: string[] = [];
  const check = (ok: boolean, text: string) => out.push(`${ok ? 'MET   ' : 'MISSED'} ${text}`);
  const paced = rows.find((r) => r.variant.startsWith('engine: paced'));
  for (const drain of rows.filter((r) => r.variant.endsWith('drain') || r.variant.endsWith('drain backlog'))) {
    const who = drain.variant.includes('no journeys') ? 'state core (no journeys)' : 'full engine';
    check(drain.eventsPerSec >= TARGETS.eventsPerSec, `${who}: throughput >= ${fmtInt(TARGETS.eventsPerSec)} events/s: ${fmtInt(drain.eventsPerSec)}`);
    if (drain.ratioVsFloor !== null) check(drain.ratioVsFloor <= TARGETS.cpuRatio, `${who}: Node CPU <= ${TARGETS.cpuRatio}× floor: ${fmt(drain.ratioVsFloor, 2)}×`);
  }
  if (paced && paced.p99Ms !== null) {
    const rate = paced.variant.replace('engine: paced ', '');
    check(paced.p99Ms <= TARGETS.p99Ms, `p99 event-to-commit <= ${TARGETS.p99Ms} ms at ${rate}, from the producer's send: ${fmt(paced.p99Ms, 1)} ms`);
    const engine = paced.notes['engineP99Ms'] as number;
    check(engine <= TARGETS.p99Ms, `p99 event-to-commit <= ${TARGETS.p99Ms} ms at ${rate}, from the broker's append (the engine's share): ${fmt(engine, 1)} ms`);
  }
  const engineRows = rows.filter((r) => r.variant.startsWith('engine'));
  if (engineRows.length > 0) {
    const peak = Math.max(...engineRows.map((r) => r.peakRssMb));
    check(peak <= TARGETS.rssMb, `peak RSS <= ${TARGETS.rssMb} MB: ${fmtInt(peak)} MB`);
  }
  return out;
}

async function dropNamespace(redisUrl: string, namespace: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    for (const pattern of [`{${namespace}:*`, `${namespace}:*`]) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        if (keys.length) await redis.unlink(...keys);
        cursor = next;
      } while (cursor !== '0');
    }
  } finally {
    redis.disconnect();
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

// ---------------------------------------------------------------------------------------------
// Journeys on (issue 4): the shipped playbook firing on fresh traffic, against the state core
// alone on the same topic in the same run; and event-to-enqueue latency in the paced variant.
// ---------------------------------------------------------------------------------------------

/** Event time covered by the fresh backlog, ending a minute ago: inside maxTriggerAge (1 h). */
const FRESH_SPAN_MS = 30 * 60_000;

/**
 * The load generator's traffic re-stamped evenly into the last FRESH_SPAN_MS (order kept, so a
 * user's events stay in order), so journey triggers fire as they would on live traffic: the
 * backlog of the `drain` variant is days old and triggers nothing by event.
 */
async function produceFreshBacklog(brokers: string, topic: string, o: Options): Promise<{ firstMs: number }> {
  const producer = new EventProducer({ connection: { 'bootstrap.servers': brokers } });
  await producer.connect();
  try {
    const end = Date.now() - 60_000;
    const start = end - FRESH_SPAN_MS;
    const gen = new TrafficGenerator({ seed: o.seed + 2, users: o.users, ratePerSec: o.events / (FRESH_SPAN_MS / 1000), startMs: start, reportingTimeZone: ZONE, idStyle: o.idStyle, interestShare: o.interestShare });
    for (let i = 0; i < o.events; i++) {
      const { event } = gen.next();
      const t = start + Math.floor((i * FRESH_SPAN_MS) / o.events);
      await producer.produce(topic, event.userId, encodeEvent({ ...event, timeMs: t, sentMs: t }), t);
      if (i % 50_000 === 0 && i > 0) progress(`producing ${topic}: ${fmtInt(i)} / ${fmtInt(o.events)}`);
    }
    const stats = await producer.flush();
    if (stats.failed > 0) throw new Error(`${stats.failed} of ${stats.sent} fresh events were not delivered: ${stats.firstError}`);
    return { firstMs: start };
  } finally {
    await producer.disconnect();
  }
}

/** A bench config with its own touch queue, so the rounds' touches are counted apart. */
async function withTouchQueue(configFile: string, queue: string): Promise<string> {
  const doc = parseDocument(await readFile(configFile, 'utf8'));
  doc.setIn(['touches', 'queue'], queue);
  await writeFile(configFile, doc.toString());
  return configFile;
}

/** Touches decided in a run: jobs in its queue (any state) plus outbox entries not yet relayed. */
async function touchesDecided(redisUrl: string, queueName: string, namespace: string, topic: string, partitions: number[]): Promise<{ jobs: Job[]; outbox: number }> {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(queueName, { connection });
  try {
    const jobs = await queue.getJobs(['completed', 'failed', 'waiting', 'delayed', 'active', 'prioritized']);
    let outbox = 0;
    for (const p of partitions) outbox += await connection.hlen(laneKeys(namespace, topic, p).outbox);
    return { jobs, outbox };
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

interface JourneysSamples {
  core: DrainResult[];
  journeys: Array<DrainResult & { touches: number }>;
  /** The playbook with the delivery workers in another process (`nudge worker`), as at scale. */
  relayOnly: Array<DrainResult & { touches: number }>;
}

/** Alternates the state core and the full playbook on the fresh backlog, --rounds rounds each. */
async function runJourneysDrain(o: Options, services: { brokers: string; redisUrl: string }, namespace: string, topic: string, profile: (name: string) => string[]): Promise<JourneysSamples> {
  const ends = await highWatermarks(services.brokers, topic);
  const partitions = [...ends.keys()];
  const out: JourneysSamples = { core: [], journeys: [], relayOnly: [] };
  const modes = [
    { name: 'jcore', journeys: false, workers: true, what: 'without journeys' },
    { name: 'journeys', journeys: true, workers: true, what: 'with the playbook, workers in process' },
    { name: 'jrelay', journeys: true, workers: false, what: 'with the playbook, no workers (relay only)' },
  ] as const;
  for (let round = 1; round <= o.rounds; round++) {
    for (const { name, journeys, workers, what } of modes) {
      progress(`round ${round}/${o.rounds} ${name}: Engine ${what}, draining ${fmtInt(sumOf(ends))} fresh events...`);
      const ns = `${namespace}${name}${round}`;
      const queue = `bench-touches-${ns}`;
      onCleanup(() => dropNamespace(services.redisUrl, ns));
      onCleanup(() => dropNamespace(services.redisUrl, `bull:${queue}`));
      const base = await benchConfigFile(o.config, { brokers: services.brokers, redisUrl: services.redisUrl, topic, groupId: uniqueName(`bench-${name}`), namespace: ns }, { journeys });
      const configFile = await withTouchQueue(base, queue);
      const r = await runDrainChild({ variant: 'drain', redisUrl: services.redisUrl, namespace: ns, topic, ends: [...ends], configFile, workers, warmupEvents: Math.floor(o.warmupShare * sumOf(ends)), windowEndEvents: Math.floor(WINDOW_END * sumOf(ends)) }, profile(o.rounds > 1 ? `${name}-${round}` : name));
      if (journeys) {
        const { jobs, outbox } = await touchesDecided(services.redisUrl, queue, ns, topic, partitions);
        (workers ? out.journeys : out.relayOnly).push({ ...r, touches: jobs.length + outbox });
        progress(`  ${fmtInt(r.events / r.seconds)} events/s, ${fmt(r.cpuUs / r.events, 2)} µs/event, ${fmtInt(jobs.length + outbox)} touches${threadShares(r)}`);
      } else {
        out.core.push(r);
        progress(`  ${fmtInt(r.events / r.seconds)} events/s, ${fmt(r.cpuUs / r.events, 2)} µs/event${threadShares(r)}`);
      }
    }
  }
  return out;
}

function threadsOf(r: DrainResult): Record<string, number> {
  const t = r.extra['threadCpuUs'];
  return typeof t === 'object' ? t : {};
}

/** " (JS thread a, V8 helpers b, ... µs/event)": where a drain's CPU went, by thread kind. */
function threadShares(r: DrainResult): string {
  const t = threadsOf(r);
  if (Object.keys(t).length === 0) return '';
  const parts = Object.entries(t).filter(([, us]) => us / r.events >= 0.05).sort((a, b) => b[1] - a[1]);
  return ` (by thread, µs/event: ${parts.map(([name, us]) => `${name} ${fmt(us / r.events, 2)}`).join(', ')})`;
}

function journeysRows(s: JourneysSamples, floorUs: number | null): Row[] {
  if (s.core.length === 0 || s.journeys.length === 0) return [];
  const core = drainRow('fresh: engine, no journeys', s.core, floorUs);
  const on = drainRow('fresh: engine + playbook', s.journeys, floorUs);
  const touches = median(s.journeys.map((r) => r.touches));
  on.notes['touches'] = touches;
  on.notes['touchRatePct'] = round3((100 * touches) / on.events);
  on.notes['touchesPerSec'] = round3(median(s.journeys.map((r) => r.touches / r.seconds)));
  on.notes['throughputVsCore'] = round3(on.eventsPerSec / core.eventsPerSec);
  on.notes['cpuVsCore'] = round3(on.nodeUsPerEvent / core.nodeUsPerEvent);
  if (s.relayOnly.length === 0) return [core, on];
  const relay = drainRow('fresh: + playbook, no workers', s.relayOnly, floorUs);
  relay.notes['throughputVsCore'] = round3(relay.eventsPerSec / core.eventsPerSec);
  relay.notes['cpuVsCore'] = round3(relay.nodeUsPerEvent / core.nodeUsPerEvent);
  return [core, on, relay];
}

/**
 * Event-to-enqueue in the paced variant: for each touch whose triggering event was sent in the
 * measured window, the job's creation time in BullMQ (the relay's addBulk) minus the event's
 * send time (also its event time). Only touches due at once count (the job was added waiting,
 * not delayed): a quiet-hours deferral or a step at the user's usual hour is delayed on purpose.
 */
function enqueueLatency(jobs: Job[], sentAt: ReadonlyMap<string, number>, seconds: number): Record<string, number> {
  const waiting: number[] = [];
  let delayed = 0;
  let timer = 0;
  for (const j of jobs) {
    const d = j.data as { triggerEventId?: string };
    const sent = sentAt.get(d.triggerEventId ?? '');
    if (sent === undefined) {
      timer++; // a timer's (absence, inactivity) or an event's sent outside the window
      continue;
    }
    if ((j.delay ?? 0) > 0) delayed++;
    else waiting.push(j.timestamp - sent);
  }
  return {
    touchesInWindow: waiting.length + delayed,
    touchesPerSec: round3((waiting.length + delayed) / seconds),
    delayedTouches: delayed,
    timerOrOutsideTouches: timer,
    enqueueP50Ms: quantile(waiting, 0.5) ?? NaN,
    enqueueP99Ms: quantile(waiting, 0.99) ?? NaN,
    enqueueMaxMs: quantile(waiting, 1) ?? NaN,
  };
}

function journeysVerdicts(rows: Row[]): string[] {
  const out: string[] = [];
  const check = (ok: boolean, text: string) => out.push(`${ok ? 'MET   ' : 'MISSED'} ${text}`);
  const on = rows.find((r) => r.variant === 'fresh: engine + playbook');
  if (on) {
    const ratio = on.notes['throughputVsCore'] as number;
    check(ratio >= 0.8, `playbook on (${fmt(on.notes['touchRatePct'] as number, 2)} % touch rate): throughput >= 80 % of the state core's, same run: ${fmt(100 * ratio, 0)} % (Node CPU per event ${fmt(on.notes['cpuVsCore'] as number, 2)}× the core's)`);
  }
  const relay = rows.find((r) => r.variant === 'fresh: + playbook, no workers');
  if (relay) {
    const ratio = relay.notes['throughputVsCore'] as number;
    check(ratio >= 0.8, `playbook on, workers in another process: throughput >= 80 % of the state core's: ${fmt(100 * ratio, 0)} % (Node CPU per event ${fmt(relay.notes['cpuVsCore'] as number, 2)}× the core's)`);
  }
  const paced = rows.find((r) => r.variant.startsWith('engine: paced'));
  if (paced && typeof paced.notes['enqueueP99Ms'] === 'number') {
    check((paced.notes['enqueueP99Ms'] as number) <= 100, `p99 event-to-enqueue (waiting job) <= 100 ms at ${paced.variant.replace('engine: paced ', '')}: ${fmt(paced.notes['enqueueP99Ms'] as number, 1)} ms over ${fmtInt(paced.notes['touchesInWindow'] as number)} touches`);
  }
  return out;
}

const input = childInput<ChildInput>();
if (input !== null) {
  childMain(input).catch((err: unknown) => {
    process.stderr.write(`[bench] ${input.variant} process failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    exitChild(1);
  });
} else {
  main()
    .catch((err: unknown) => {
      if (interrupted()) return;
      process.stderr.write(`[bench] pipeline bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    })
    .finally(() => cleanup());
}
