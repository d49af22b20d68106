import { encodeEvent } from '../../src/contract/event.js';
import { EventProducer } from '../../src/sources/event-producer.js';
import { runLoadgen } from '../../src/tools/loadgen/run-loadgen.js';
import { TrafficGenerator } from '../../src/tools/loadgen/traffic.js';
import { progress } from './report.js';

const DAY_MS = 86_400_000;

export interface BacklogOptions {
  brokers: string;
  topic: string;
  events: number;
  users: number;
  seed: number;
  /** Event time covered by the backlog, ending a day before now (no future clamping). */
  spanDays: number;
  reportingTimeZone: string;
  idStyle?: 'short' | 'uuid';
}

export interface BacklogStats {
  produced: number;
  seconds: number;
  /** Mean encoded event size, from a sample of the same traffic. */
  avgBytes: number;
  startMs: number;
  ratePerSec: number;
}

/**
 * Pre-produces seeded synthetic banking traffic (the load generator's, unpaced: as fast as the
 * broker takes it) keyed by user id, and waits for every acknowledgement.
 */
export async function produceBacklog(o: BacklogOptions): Promise<BacklogStats> {
  const startMs = Date.now() - (o.spanDays + 1) * DAY_MS;
  const ratePerSec = o.events / (o.spanDays * 86_400);
  const traffic = { seed: o.seed, users: o.users, ratePerSec, reportingTimeZone: o.reportingTimeZone, idStyle: o.idStyle ?? 'short' };
  const producer = new EventProducer({ connection: { 'bootstrap.servers': o.brokers } });
  await producer.connect();
  const started = Date.now();
  try {
    const produced = await runLoadgen(producer, {
      ...traffic,
      topic: o.topic,
      paced: false,
      startMs,
      count: o.events,
      onProgress: (p) => progress(`producing ${o.topic}: ${p.produced.toLocaleString('en-US')} / ${o.events.toLocaleString('en-US')}`),
    });
    const stats = await producer.flush();
    if (stats.failed > 0) throw new Error(`${stats.failed} of ${stats.sent} events were not delivered: ${stats.firstError}`);
    const seconds = (Date.now() - started) / 1000;
    progress(`produced ${produced.toLocaleString('en-US')} events in ${seconds.toFixed(1)} s`);
    const sample = new TrafficGenerator({ ...traffic, startMs });
    let bytes = 0;
    for (let i = 0; i < 5_000; i++) bytes += encodeEvent(sample.next().event).length;
    return { produced, seconds, avgBytes: Math.round(bytes / 5_000), startMs, ratePerSec };
  } finally {
    await producer.disconnect();
  }
}
