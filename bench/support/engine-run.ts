import { mkdtemp, readFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import { parseDocument } from 'yaml';
import type { Engine } from '../../src/engine/engine.js';
import { laneKeys } from '../../src/state/keys.js';
import { onCleanup } from './services.js';

export interface EngineTarget {
  brokers: string;
  redisUrl: string;
  topic: string;
  groupId: string;
  namespace: string;
}

/**
 * Writes a copy of a Nudge config file (the shipped config/nudge.yaml by default: two activity
 * metrics, counters, a sum, a streak and a trait — a realistic state step) pointed at the bench's
 * broker, Redis, topic, group and key namespace. Loaded with `loadConfig({ file })` as
 * `nudge run --config` does.
 */
export async function benchConfigFile(base: string, t: EngineTarget, options: { journeys?: boolean } = {}): Promise<string> {
  const doc = parseDocument(await readFile(base, 'utf8'));
  // Without journeys the engine is the streaming state core alone (no rules, no touch relay or workers).
  if (options.journeys === false) doc.delete('journeys');
  doc.setIn(['kafka', 'brokers'], t.brokers.split(','));
  doc.setIn(['kafka', 'topic'], t.topic);
  doc.setIn(['kafka', 'dlqTopic'], `${t.topic}.dlq`);
  doc.setIn(['kafka', 'groupId'], t.groupId);
  doc.setIn(['redis', 'url'], t.redisUrl);
  doc.setIn(['redis', 'keyPrefix'], t.namespace);
  doc.setIn(['http', 'port'], 0);
  doc.setIn(['log', 'level'], 'silent');
  const dir = await mkdtemp(path.join(tmpdir(), 'nudge-bench-'));
  onCleanup(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, `${t.topic}.yaml`);
  await writeFile(file, doc.toString());
  return file;
}

/** Last applied offset of each lane (-1 = nothing yet), read from the lane fences in Redis. */
export async function readFences(redis: Redis, namespace: string, topic: string, partitions: number[]): Promise<Map<number, number>> {
  const pipe = redis.pipeline();
  for (const p of partitions) pipe.hget(laneKeys(namespace, topic, p).fence, 'offset');
  const replies = (await pipe.exec()) ?? [];
  return new Map(partitions.map((p, i) => [p, replies[i]?.[1] == null ? -1 : Number(replies[i]?.[1])]));
}

/** True when every lane's fence has reached the end of its partition (high watermark - 1). */
export function caughtUp(fences: Map<number, number>, ends: Map<number, number>): boolean {
  for (const [p, high] of ends) if (high > 0 && (fences.get(p) ?? -1) < high - 1) return false;
  return true;
}

/** Commit acknowledgements of one lane, in commit order: last offset applied, and when (ms epoch). */
export interface LaneCommits {
  last: number[];
  at: number[];
}

/**
 * Records the moment each batch's state commit is acknowledged by Redis, by wrapping the one
 * command LaneStore commits with (`nudgeCommitBatch`, args: numKeys, fence key, ..., epoch,
 * firstOffset, lastOffset, ...). This is the exact event-to-commit point of every event; the
 * engine's own histogram only observes the newest event of each batch (see pipeline.bench.ts).
 * A hook in Lanes (onCommitted(partition, firstOffset, lastOffset)) would make this wrapper
 * unnecessary. Returns false when the command is not there (LaneStore changed).
 */
export function recordCommits(engine: Engine, namespace: string, topic: string, partitions: number[], out: Map<number, LaneCommits>): boolean {
  const redis = engine.redis as unknown as Record<string, unknown>;
  const original = redis['nudgeCommitBatch'];
  if (typeof original !== 'function') return false;
  const laneOfFence = new Map(partitions.map((p) => [laneKeys(namespace, topic, p).fence, p]));
  for (const p of partitions) out.set(p, { last: [], at: [] });
  redis['nudgeCommitBatch'] = (...args: unknown[]): Promise<number> => {
    const reply = (original as (...a: unknown[]) => Promise<number>).apply(engine.redis, args);
    const numKeys = Number(args[0]);
    const lane = laneOfFence.get(String(args[1]));
    const last = Number(args[numKeys + 3]);
    return reply.then((code) => {
      const log = lane === undefined ? undefined : out.get(lane);
      if (code === 1 && log !== undefined && last >= 0) {
        log.last.push(last);
        log.at.push(Date.now());
      }
      return code;
    });
  };
  return true;
}

/** Cumulative bucket counts of a prom-client histogram: [upper bound, count]. */
export async function histogramBuckets(registry: Registry, name: string): Promise<Array<[number, number]>> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return [];
  const data = await metric.get();
  return data.values
    .filter((v) => (v as { metricName?: string }).metricName === `${name}_bucket`)
    .map((v): [number, number] => {
      const le = v.labels['le'];
      return [le === '+Inf' || le === undefined ? Infinity : Number(le), v.value];
    })
    .sort((a, b) => a[0] - b[0]);
}

/** After JSON (the IPC channel), +Inf arrives as null: restore it. */
export function reviveHistogram(buckets: Array<[number | null, number]>): Array<[number, number]> {
  return buckets.map(([le, count]) => [le ?? Infinity, count]);
}

/** Prometheus' histogram_quantile: linear interpolation inside the bucket the rank falls in. */
export function histogramQuantile(q: number, cumulative: Array<[number, number]>): number {
  const total = cumulative[cumulative.length - 1]?.[1] ?? 0;
  if (total === 0) return NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of cumulative) {
    if (count >= rank) {
      if (le === Infinity) return prevLe; // as Prometheus: the highest finite bound
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, count - prevCount);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

/** Bucket counts of `b` minus those of `a` (a window of a cumulative histogram). */
export function histogramDiff(a: Array<[number, number]>, b: Array<[number, number]>): Array<[number, number]> {
  return b.map(([le, count], i) => [le, count - (a[i]?.[1] ?? 0)]);
}

/** Sum of a counter's values over all its labels (0 when the metric does not exist). */
export async function counterTotal(registry: Registry, name: string): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const data = await metric.get();
  return data.values.reduce((s, v) => s + v.value, 0);
}
