import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config/load.js';
import { DEFAULT_EVENT_LIMITS, parseEvent } from '../../src/contract/validate.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { silentLogger } from '../../src/log.js';
import { KafkaSource } from '../../src/sources/kafka-source.js';
import { laneKeys } from '../../src/state/keys.js';
import { cpuMicros, mainThreadSched, nowMs, redisCpuSeconds, waitShare, type RssSampler } from './measure.js';
import { applyNaively, type NaiveLane } from './naive-step.js';

export interface NaiveInput {
  variant: 'naive';
  brokers: string;
  redisUrl: string;
  topic: string;
  groupId: string;
  namespace: string;
  configFile: string;
  /** Each partition's high watermark: the topic's end, if it comes first. */
  ends: Array<[number, number]>;
  /** The naive consumer is ~50× slower: it is measured for this long, not to the end of the topic. */
  seconds: number;
}

export interface NaiveResult {
  type: 'result';
  events: number;
  seconds: number;
  cpuUs: number;
  redisCpuUs: number | null;
  peakRssMb: number;
  startupSeconds: number;
  extra: Record<string, number>;
}

/**
 * The `naive` variant of bench/pipeline.bench.ts, end to end through Kafka: the engine's own
 * KafkaSource (consume(1000), same librdkafka tuning) and decode + validate, then every valid
 * event applied one awaited Redis command at a time (bench/support/naive-step.ts), partition by
 * partition as the batches arrive. The window opens at the first batch and closes after
 * `seconds` (or at the end of the topic); offsets are committed as the engine's are, after the
 * batch's writes.
 */
export async function naiveVariant(input: NaiveInput, rss: RssSampler): Promise<NaiveResult> {
  const config = loadConfig({ file: input.configFile, env: {} });
  const spec = compileStateSpec(config);
  const limits = { ...DEFAULT_EVENT_LIMITS, ...config.events };
  const redis = new Redis(input.redisUrl);
  const probe = new Redis(input.redisUrl);
  const lanes = new Map<number, NaiveLane>();
  const lane = (p: number): NaiveLane => {
    let l = lanes.get(p);
    if (l === undefined) lanes.set(p, (l = { keys: laneKeys(input.namespace, input.topic, p), streamTime: 0 }));
    return l;
  };
  const source = new KafkaSource({ connection: { 'bootstrap.servers': input.brokers }, topic: input.topic, groupId: input.groupId, logger: silentLogger() });
  const empty = Buffer.alloc(0);
  const ends = new Map(input.ends);
  const remaining = new Set([...ends].filter(([, high]) => high > 0).map(([p]) => p));
  const started = nowMs();
  // In an object: TypeScript does not see the callback's assignment to a plain `let`.
  const w: { first: { t: number; cpu: number; redis: number; sched: ReturnType<typeof mainThreadSched> } | null } = { first: null };
  let counted = 0;
  let commands = 0;
  let closing = false;
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => (finish = resolve));
  await source.start({
    onAssigned: () => {},
    onRevoked: () => {},
    onBatch: async (batch) => {
      if (closing) return;
      const first = (w.first ??= { t: nowMs(), cpu: cpuMicros(), redis: await redisCpuSeconds(probe), sched: mainThreadSched() });
      const now = Date.now();
      const l = lane(batch.partition);
      for (const m of batch.messages) {
        const parsed = parseEvent(m.value ?? empty, limits, now);
        if (parsed.ok) commands += await applyNaively(redis, l, parsed.event, spec, now);
        counted++;
        if (m.offset >= (ends.get(batch.partition) ?? 0) - 1) remaining.delete(batch.partition);
        if (remaining.size === 0 || nowMs() - first.t >= input.seconds * 1000) {
          closing = true;
          finish();
          return;
        }
      }
    },
  });
  await done;
  const t1 = nowMs();
  const cpu1 = cpuMicros();
  const sched1 = mainThreadSched();
  const redis1 = await redisCpuSeconds(probe);
  await source.stop();
  redis.disconnect();
  probe.disconnect();
  const f = w.first;
  if (f === null) throw new Error('naive variant: no batch arrived');
  return {
    type: 'result',
    events: counted,
    seconds: (t1 - f.t) / 1000,
    cpuUs: cpu1 - f.cpu,
    redisCpuUs: (redis1 - f.redis) * 1e6,
    peakRssMb: rss.stop(),
    startupSeconds: (f.t - started) / 1000,
    extra: { commandsPerEvent: commands / Math.max(1, counted), cpuWaitShare: waitShare(f.sched, sched1, t1 - f.t) },
  };
}
