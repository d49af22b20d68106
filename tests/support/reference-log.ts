import { randomBytes } from 'node:crypto';
import { encodeEvent, type AppEvent } from '../../src/contract/event.js';
import { TrafficGenerator } from '../../src/tools/loadgen/traffic.js';
import type { RefMessage } from './reference-model.js';

/**
 * A seeded event log for reference tests: synthetic banking traffic over many days (with the
 * generator's own duplicates and slightly late deliveries), plus what the engine must survive:
 * deliveries hours late (beyond the allowed lateness), events from the future (beyond the
 * skew bound), undecodable bytes and events that fail validation. Each message is assigned a
 * partition by the test (not the producer's partitioner), so the reference knows each lane.
 */
export interface LogMessage {
  partition: number;
  key: string;
  value: Buffer;
  ref: RefMessage;
}

export interface ReferenceLogOptions {
  seed: number;
  users: number;
  days: number;
  events: number;
  partitions: number;
  startMs: number;
  /** The engine's (injected) wall clock: future events are placed beyond it. */
  nowMs: number;
  reportingTimeZone: string;
}

export function partitionOf(userId: string, partitions: number): number {
  let h = 2166136261;
  for (let i = 0; i < userId.length; i++) h = Math.imul(h ^ userId.charCodeAt(i), 16777619);
  return (h >>> 0) % partitions;
}

export function buildReferenceLog(o: ReferenceLogOptions): LogMessage[] {
  const gen = new TrafficGenerator({
    seed: o.seed,
    users: o.users,
    startMs: o.startMs,
    ratePerSec: o.events / (o.days * 86_400),
    reportingTimeZone: o.reportingTimeZone,
  });
  const endMs = o.startMs + o.days * 86_400_000;
  const deliveries: Array<{ arrival: number; event: AppEvent | null; bytes?: Buffer; key: string }> = [];
  let rnd = o.seed >>> 0;
  const random = (): number => {
    rnd = (Math.imul(rnd ^ (rnd >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return rnd / 4294967296;
  };
  for (let g = gen.next(); g.arrivalMs < endMs; g = gen.next()) {
    const r = random();
    if (r < 0.002) {
      // Far too late: delivered 3 to 10 hours after it happened (beyond 2 h of lateness).
      deliveries.push({ arrival: g.arrivalMs + 3 * 3_600_000 + random() * 7 * 3_600_000, event: g.event, key: g.event.userId });
    } else if (r < 0.0025) {
      // From the future: a device clock a day or more ahead of the engine's wall clock.
      deliveries.push({ arrival: g.arrivalMs, event: { ...g.event, timeMs: o.nowMs + 86_400_000 + Math.floor(random() * 86_400_000) }, key: g.event.userId });
    } else if (r < 0.003) {
      // Undecodable bytes.
      deliveries.push({ arrival: g.arrivalMs, event: null, bytes: randomBytes(1 + Math.floor(random() * 40)), key: g.event.userId });
    } else if (r < 0.0035) {
      // Decodes, but fails validation (no user id).
      deliveries.push({ arrival: g.arrivalMs, event: null, bytes: Buffer.from(encodeEvent({ ...g.event, userId: '' })), key: g.event.userId });
    } else {
      deliveries.push({ arrival: g.arrivalMs, event: g.event, key: g.event.userId });
    }
  }
  deliveries.sort((a, b) => a.arrival - b.arrival);
  return deliveries.map((d) => {
    const partition = partitionOf(d.key, o.partitions);
    const value = d.bytes ?? Buffer.from(encodeEvent(d.event as AppEvent));
    const ref: RefMessage = {
      partition,
      event:
        d.event === null || d.bytes !== undefined
          ? null
          : { eventId: d.event.eventId, userId: d.event.userId, name: d.event.name, timeMs: d.event.timeMs, props: { ...d.event.props }, value: d.event.value, tz: d.event.tz, channel: d.event.channel, deviceId: d.event.deviceId },
    };
    return { partition, key: d.key, value, ref };
  });
}
