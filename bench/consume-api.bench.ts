/**
 * One question: which consumer API of @confluentinc/kafka-javascript reads a backlog with the
 * least CPU per message — the node-rdkafka-style `consume(n)` loop that KafkaSource uses, or the
 * KafkaJS-style `eachBatch` (with `js.consumer.max.batch.size` raised, unlimited, or at its
 * default of 32)? src/sources/kafka-source.ts cites this bench for its choice.
 *
 * Same run, same pre-produced topic (seeded synthetic banking traffic), a fresh consumer group
 * per variant, each variant in its own forked process (CPU is process.cpuUsage: the JS thread
 * and librdkafka's threads), rounds interleaved (A B C D A B C D ...) so a burst of load from
 * other work on the machine hits every variant alike; the table shows medians. Every variant
 * gets KafkaSource's librdkafka tuning (fetch.queue.backoff.ms 100, prefetch capped at 16 MB /
 * 20k messages), no offset commits, and a handler that only touches each message's value: this
 * is the API's own cost. The rate counts from the first delivered batch to the last message.
 * `js.consumer.max.batch.size` is a top-level property of the KafkaJS consumer config (client
 * 1.7.0+, CHANGELOG #393); -1 means unlimited (types/kafkajs.d.ts, MIGRATION.md).
 *
 *   npm run bench:consume -- [--events 300000] [--partitions 4] [--rounds 3] [--variants a,b]
 * BENCH_EVENTS sets --events; KAFKA_BROKERS reuses a running broker. Prints one table; writes
 * bench/results/consume-api.json.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import kafka from '@confluentinc/kafka-javascript';
import type { ConsumerGlobalConfig, Message as KafkaMessage } from '@confluentinc/kafka-javascript';
import { produceBacklog } from './support/backlog.js';
import { BenchChild, childInput, exitChild, toParent, type Message } from './support/child.js';
import { createTopic, deleteTopics, highWatermarks, sumOf, uniqueName } from './support/kafka.js';
import { cpuMicros, mainThreadSched, nowMs, RssSampler, waitShare } from './support/measure.js';
import { finishMeta, fmt, fmtInt, formatTable, loadLine, median, progress, runMeta, writeResult } from './support/report.js';
import { benchServices, cleanup, interrupted, onCleanup } from './support/services.js';

const THIS_FILE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(THIS_FILE), '..');

/** KafkaSource's consumer tuning (src/sources/kafka-source.ts), given to every variant. */
const TUNING = {
  'fetch.queue.backoff.ms': 100,
  'queued.max.messages.kbytes': 16_384,
  'queued.min.messages': 20_000,
} as const;

const VARIANTS = {
  'consume(1000)': { api: 'consume', batch: 1000 },
  'eachBatch max.batch.size=1000': { api: 'eachBatch', batch: 1000 },
  'eachBatch max.batch.size=-1': { api: 'eachBatch', batch: -1 },
  'eachBatch default (32)': { api: 'eachBatch', batch: null },
} as const satisfies Record<string, { api: 'consume' | 'eachBatch'; batch: number | null }>;
type VariantName = keyof typeof VARIANTS;

interface ChildInput {
  variant: VariantName;
  brokers: string;
  topic: string;
  groupId: string;
  ends: Array<[number, number]>;
}

interface Result extends Message {
  type: 'result';
  messages: number;
  seconds: number;
  cpuUs: number;
  batches: number;
  peakRssMb: number;
  startupSeconds: number;
  /** Share of the window the JS thread was runnable but waiting for a CPU (others' load). */
  cpuWaitShare: number;
}

/** Counts messages per partition until every partition reached its end; the first batch opens the window. */
class Window {
  private t0 = 0;
  private cpu0 = 0;
  private sched0: ReturnType<typeof mainThreadSched> = null;
  private counted = 0;
  private batches = 0;
  private readonly remaining: Set<number>;
  private finish: (r: { t1: number; cpu1: number; sched1: ReturnType<typeof mainThreadSched> }) => void = () => {};
  readonly done: Promise<{ t1: number; cpu1: number; sched1: ReturnType<typeof mainThreadSched> }>;
  readonly started = nowMs();

  constructor(private readonly ends: Map<number, number>) {
    this.remaining = new Set([...ends].filter(([, high]) => high > 0).map(([p]) => p));
    this.done = new Promise((resolve) => (this.finish = resolve));
  }

  batch(partition: number, count: number, lastOffset: number): void {
    if (this.t0 === 0) {
      this.t0 = nowMs();
      this.cpu0 = cpuMicros();
      this.sched0 = mainThreadSched();
    } else {
      this.counted += count;
      this.batches++;
    }
    if (lastOffset >= (this.ends.get(partition) ?? 0) - 1 && this.remaining.delete(partition) && this.remaining.size === 0) {
      this.finish({ t1: nowMs(), cpu1: cpuMicros(), sched1: mainThreadSched() });
    }
  }

  async result(rss: RssSampler): Promise<Result> {
    const { t1, cpu1, sched1 } = await this.done;
    return {
      type: 'result',
      messages: this.counted,
      seconds: (t1 - this.t0) / 1000,
      cpuUs: cpu1 - this.cpu0,
      batches: this.batches,
      peakRssMb: rss.stop(),
      startupSeconds: (this.t0 - this.started) / 1000,
      cpuWaitShare: waitShare(this.sched0, sched1, t1 - this.t0),
    };
  }
}

async function consumeLoop(input: ChildInput, batch: number, w: Window): Promise<() => Promise<void>> {
  const consumer = new kafka.KafkaConsumer(
    {
      'bootstrap.servers': input.brokers,
      'group.id': input.groupId,
      'enable.auto.commit': false,
      'enable.auto.offset.store': false,
      ...TUNING,
    } as ConsumerGlobalConfig,
    // A topic property: in the global config the binding would ignore it.
    { 'auto.offset.reset': 'earliest' },
  ) as kafka.KafkaConsumer & { setDefaultIsTimeoutOnlyForFirstMessage(v: boolean): void };
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 30_000 }, (err) => (err ? reject(err) : resolve())));
  // As KafkaSource: return as soon as something arrived, wait at most 100 ms for the first message.
  consumer.setDefaultConsumeTimeout(100);
  consumer.setDefaultIsTimeoutOnlyForFirstMessage(true);
  consumer.subscribe([input.topic]);
  let running = true;
  let bytes = 0;
  const loop = (async () => {
    while (running) {
      const messages = await new Promise<KafkaMessage[]>((resolve, reject) => consumer.consume(batch, (err, m) => (err ? reject(err) : resolve(m))));
      if (messages.length === 0) continue;
      const last = new Map<number, number>();
      const count = new Map<number, number>();
      for (const m of messages) {
        bytes += m.value?.length ?? 0;
        last.set(m.partition, m.offset);
        count.set(m.partition, (count.get(m.partition) ?? 0) + 1);
      }
      for (const [p, offset] of last) w.batch(p, count.get(p) ?? 0, offset);
    }
  })();
  return async () => {
    running = false;
    await loop;
    if (bytes === 0) throw new Error('no bytes read');
    await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  };
}

async function eachBatch(input: ChildInput, batch: number | null, w: Window): Promise<() => Promise<void>> {
  const consumer = new kafka.KafkaJS.Kafka({ kafkaJS: { brokers: input.brokers.split(','), logLevel: kafka.KafkaJS.logLevel.ERROR } }).consumer({
    kafkaJS: { groupId: input.groupId, fromBeginning: true, autoCommit: false },
    ...TUNING,
    ...(batch === null ? {} : { 'js.consumer.max.batch.size': batch }),
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [input.topic] });
  let bytes = 0;
  await consumer.run({
    eachBatch: async ({ batch: b }) => {
      for (const m of b.messages) bytes += m.value?.length ?? 0;
      w.batch(b.partition, b.messages.length, Number(b.lastOffset()));
    },
  });
  return async () => {
    if (bytes === 0) throw new Error('no bytes read');
    await consumer.disconnect();
  };
}

async function childMain(input: ChildInput): Promise<void> {
  const rss = new RssSampler().start(100);
  const w = new Window(new Map(input.ends));
  const v = VARIANTS[input.variant];
  const stop = v.api === 'consume' ? await consumeLoop(input, v.batch, w) : await eachBatch(input, v.batch, w);
  const result = await w.result(rss);
  await stop();
  await toParent(result);
  exitChild(0);
}

interface Options {
  events: number;
  partitions: number;
  rounds: number;
  users: number;
  seed: number;
  variants: VariantName[];
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      events: { type: 'string' },
      partitions: { type: 'string', default: '4' },
      rounds: { type: 'string', default: '3' },
      users: { type: 'string', default: '50000' },
      seed: { type: 'string', default: '20260301' },
      variants: { type: 'string' },
    },
  });
  const names = Object.keys(VARIANTS) as VariantName[];
  const variants = values.variants === undefined ? names : values.variants.split(',').map((s) => names.find((n) => n.startsWith(s.trim())));
  if (variants.some((v) => v === undefined)) throw new Error(`--variants takes prefixes of: ${names.join(' | ')}`);
  return {
    events: Number(values.events ?? process.env.BENCH_EVENTS ?? 300_000),
    partitions: Number(values.partitions),
    rounds: Math.max(1, Number(values.rounds)),
    users: Number(values.users),
    seed: Number(values.seed),
    variants: variants as VariantName[],
  };
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const meta = runMeta();
  const services = await benchServices();
  const topic = uniqueName('bench.consume');
  onCleanup(() => deleteTopics(services.brokers, [topic]));
  await createTopic(services.brokers, topic, o.partitions);
  const backlog = await produceBacklog({ brokers: services.brokers, topic, events: o.events, users: o.users, seed: o.seed, spanDays: 3, reportingTimeZone: 'Asia/Shanghai' });
  const ends = await highWatermarks(services.brokers, topic);
  const results = new Map<VariantName, Result[]>(o.variants.map((v) => [v, []]));
  for (let round = 1; round <= o.rounds; round++) {
    for (const variant of o.variants) {
      progress(`round ${round}/${o.rounds}: ${variant}...`);
      const child = new BenchChild(THIS_FILE, { variant, brokers: services.brokers, topic, groupId: uniqueName('bench-consume'), ends: [...ends] } satisfies ChildInput);
      try {
        const r = await child.next<Result>('result', 120_000);
        results.get(variant)?.push(r);
        progress(`  ${fmtInt(r.messages / r.seconds)} msgs/s, ${fmt(r.cpuUs / r.messages, 2)} µs/msg`);
      } finally {
        await child.close();
      }
    }
  }
  const rows = o.variants.map((variant) => {
    const rs = results.get(variant) ?? [];
    const rates = rs.map((r) => r.messages / r.seconds);
    const cpu = rs.map((r) => r.cpuUs / r.messages);
    return {
      variant,
      rounds: rs.length,
      messages: median(rs.map((r) => r.messages)),
      msgsPerSecMedian: median(rates),
      msgsPerSecRange: [Math.min(...rates), Math.max(...rates)],
      cpuUsPerMsgMedian: median(cpu),
      cpuUsPerMsgRange: [Math.min(...cpu), Math.max(...cpu)],
      meanBatch: median(rs.map((r) => r.messages / Math.max(1, r.batches))),
      peakRssMb: Math.max(...rs.map((r) => r.peakRssMb)),
      cpuWaitShare: median(rs.map((r) => r.cpuWaitShare)),
      raw: rs,
    };
  });
  const base = rows.find((r) => r.variant === 'consume(1000)')?.cpuUsPerMsgMedian ?? NaN;
  const finalMeta = finishMeta(meta);
  const table = formatTable(
    ['variant', 'msgs/s (median)', 'range', 'CPU µs/msg (median)', 'range', '× consume(1000)', 'msgs/batch', 'peak RSS MB', 'CPU wait %'],
    rows.map((r) => [
      r.variant,
      fmtInt(r.msgsPerSecMedian),
      `${fmtInt(r.msgsPerSecRange[0])}–${fmtInt(r.msgsPerSecRange[1])}`,
      fmt(r.cpuUsPerMsgMedian, 2),
      `${fmt(r.cpuUsPerMsgRange[0], 2)}–${fmt(r.cpuUsPerMsgRange[1], 2)}`,
      `${fmt(r.cpuUsPerMsgMedian / base, 2)}×`,
      fmtInt(r.meanBatch),
      fmtInt(r.peakRssMb),
      fmt(100 * r.cpuWaitShare, 0),
    ]),
  );
  process.stdout.write(
    `\nConsumer API, ${fmtInt(sumOf(ends))} messages of ~${backlog.avgBytes} B, ${o.partitions} partitions, ${o.rounds} interleaved rounds, ` +
      `no-op handler, no commits; Kafka ${services.started.kafka ? 'private' : 'shared (KAFKA_BROKERS)'}\n${table}\n` +
      `CPU wait %: share of the measured time the JS thread was runnable but waiting for a CPU (/proc/self/schedstat), i.e. other processes' load\n` +
      `${loadLine(finalMeta)}\n`,
  );
  const file = await writeResult('consume-api', { bench: 'consume-api', meta: finalMeta, options: o, backlog, tuning: TUNING, rows });
  progress(`wrote ${path.relative(REPO, file)}`);
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
      process.stderr.write(`[bench] consume-api bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    })
    .finally(() => cleanup());
}
