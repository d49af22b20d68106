import type { Redis } from 'ioredis';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { EventProducer } from '../../src/sources/event-producer.js';
import { readFences } from './lane-fences.js';

/**
 * Helpers for the hostile-input chaos tests (issue 6 items 5, 7, 9): malformed messages of every
 * kind the engine must dead-letter, a streaming producer for logs too large to hold as an array,
 * a reader for the dead-letter topic, a lane stall monitor and a Prometheus series counter.
 */

export function appEvent(over: Partial<AppEvent> & Pick<AppEvent, 'eventId' | 'userId' | 'timeMs'>): AppEvent {
  return { name: 'login', channel: 'app', props: {}, value: 0, tz: '', deviceId: '', sentMs: 0, ...over };
}

export type MalformedKind = 'random-bytes' | 'truncated' | 'invalid-field' | 'oversized' | 'props-too-large' | 'poison';

export interface Malformed {
  kind: MalformedKind;
  key: string;
  value: Buffer;
  /** The code the DLQ header must carry; null = any NUDGE_EVENT_* code (random bytes). */
  code: string | null;
}

/**
 * One malformed message of `kind` for `userId`, built from a valid `base` event: undecodable
 * bytes, a valid event cut inside its user_id field, a decodable event breaking one contract
 * rule, an event over maxEventBytes (64 KiB), props over maxPropsBytes, or a valid event whose id
 * starts with `poisonPrefix` (the test's decide step throws on it).
 */
export function malformed(kind: MalformedKind, base: AppEvent, random: () => number, poisonPrefix = 'poison-'): Malformed {
  const key = base.userId;
  switch (kind) {
    case 'random-bytes': {
      // 0xff first: a tag whose wire type (its low 3 bits) is 7, which protobuf does not have,
      // so random bytes cannot happen to decode into an event that passes validation.
      const bytes = Buffer.alloc(2 + Math.floor(random() * 60));
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
      bytes[0] = 0xff;
      return { kind, key, value: bytes, code: 'NUDGE_EVENT_UNDECODABLE' };
    }
    case 'truncated': {
      // event_id (field 1) then user_id (field 2) come first in the encoding; cutting inside the
      // user id leaves a length prefix that runs past the end.
      const full = Buffer.from(encodeEvent({ ...base, eventId: base.eventId, userId: base.userId.padEnd(8, '0') }));
      const userAt = 2 + Buffer.byteLength(base.eventId) + 2;
      return { kind, key, value: full.subarray(0, userAt + 1 + Math.floor(random() * 4)), code: 'NUDGE_EVENT_UNDECODABLE' };
    }
    case 'invalid-field': {
      const variants: Array<[Partial<AppEvent>, string]> = [
        [{ userId: '' }, 'NUDGE_EVENT_MISSING_USER_ID'],
        [{ name: 'page view!' }, 'NUDGE_EVENT_NAME_BAD_CHARS'],
        [{ timeMs: Math.floor(base.timeMs / 1000) }, 'NUDGE_EVENT_TIME_OUT_OF_RANGE'],
        [{ tz: 'Mars/Olympus_Mons' }, 'NUDGE_EVENT_BAD_TZ'],
        [{ value: Number.NaN }, 'NUDGE_EVENT_VALUE_NOT_FINITE'],
        [{ eventId: '' }, 'NUDGE_EVENT_MISSING_EVENT_ID'],
        [{ channel: 'x'.repeat(40) }, 'NUDGE_EVENT_CHANNEL_TOO_LONG'],
      ];
      const [patch, code] = variants[Math.floor(random() * variants.length)] as [Partial<AppEvent>, string];
      return { kind, key, value: Buffer.from(encodeEvent({ ...base, ...patch })), code };
    }
    case 'oversized':
      return { kind, key, value: Buffer.from(encodeEvent({ ...base, props: { blob: 'A'.repeat(70_000 + Math.floor(random() * 30_000)) } })), code: 'NUDGE_EVENT_TOO_LARGE' };
    case 'props-too-large': {
      const props: Record<string, string> = {};
      for (let i = 0; i < 12; i++) props[`p${i}`] = 'B'.repeat(500);
      return { kind, key, value: Buffer.from(encodeEvent({ ...base, props })), code: 'NUDGE_EVENT_PROPS_TOO_LARGE' };
    }
    case 'poison':
      return { kind, key, value: Buffer.from(encodeEvent({ ...base, eventId: `${poisonPrefix}${base.eventId}` })), code: 'NUDGE_EVENT_POISON' };
  }
}

export interface OutMessage {
  partition: number;
  key: string;
  value: Uint8Array;
}

export interface ProduceStreamOptions {
  /** Paces production to about this many messages a second (live traffic); unset = as fast as possible. */
  ratePerSec?: number;
  /** Called as each message is queued, with its partition. */
  onQueued?: (partition: number) => void;
}

/**
 * Produces messages from an iterable without holding them all (a million-event log as an array
 * of Buffers would cost the test process hundreds of MB); the producer's bounded local queue
 * gives the backpressure. Resolves when every message is acknowledged.
 */
export async function produceStream(brokers: string, topic: string, messages: Iterable<OutMessage>, o: ProduceStreamOptions = {}): Promise<number> {
  const producer = new EventProducer({ connection: { 'bootstrap.servers': brokers }, tuning: { 'linger.ms': 20, 'batch.num.messages': 10_000 } });
  await producer.connect();
  const started = Date.now();
  let n = 0;
  try {
    for (const m of messages) {
      await producer.produce(topic, m.key, m.value, undefined, m.partition);
      o.onQueued?.(m.partition);
      n++;
      // Pacing, not waiting for an event: ahead of the schedule, sleep until it catches up.
      if (o.ratePerSec !== undefined && n % 100 === 0) {
        const ahead = started + (n / o.ratePerSec) * 1000 - Date.now();
        if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
      }
    }
    const stats = await producer.flush(120_000);
    if (stats.failed > 0) throw new Error(`${stats.failed} of ${n} messages failed: ${stats.firstError}`);
  } finally {
    await producer.disconnect();
  }
  return n;
}

export interface StallReport {
  /** Per partition: the longest time (ms) its fence stood still while it had messages left. */
  longestStallMs: Map<number, number>;
  /** Per partition: where that longest stall was (the fence it stood at; -1 = nothing applied yet) and when it began (ms after the watch started). */
  longestStallAt: Map<number, { fence: number; startedAfterMs: number }>;
  samples: number;
}

/**
 * Samples each lane's fence (last applied offset, in Redis) every `everyMs` and records, per
 * partition, the longest interval during which it had a backlog (messages queued to it beyond
 * its fence, per `queued()`) and its fence did not move: what a poison event that wedged its
 * lane would show. Polling is the only way: Redis does not notify a hash field changing.
 */
export function watchStalls(o: {
  redis: Redis;
  namespace: string;
  topic: string;
  partitions: readonly number[];
  /** Per partition, how many messages have been queued to it so far (its next offset). */
  queued: () => ReadonlyMap<number, number>;
  everyMs?: number;
}): { stop(): Promise<StallReport> } {
  const since = new Map<number, { offset: number; at: number }>();
  const longest = new Map<number, number>(o.partitions.map((p) => [p, 0]));
  const longestAt = new Map<number, { fence: number; startedAfterMs: number }>();
  const t0 = Date.now();
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const queued = new Map(o.queued()); // read before the fences: a backlog seen is a real one
      const fences = await readFences(o.redis, o.namespace, o.topic, o.partitions);
      const now = Date.now();
      samples++;
      for (const p of o.partitions) {
        const offset = fences.get(p) ?? -1;
        const last = since.get(p);
        if (offset >= (queued.get(p) ?? 0) - 1) {
          since.delete(p); // caught up: no backlog, no stall
          continue;
        }
        if (last === undefined || offset > last.offset) since.set(p, { offset, at: now });
        else if (now - last.at > (longest.get(p) ?? 0)) {
          longest.set(p, now - last.at);
          longestAt.set(p, { fence: last.offset, startedAfterMs: last.at - t0 });
        }
      }
      await new Promise((r) => setTimeout(r, o.everyMs ?? 50));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { longestStallMs: longest, longestStallAt: longestAt, samples };
    },
  };
}

/** The sample lines of a Prometheus text exposition (one line = one series), without comments. */
export function metricSamples(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
}
