import { encodeEvent } from '../../contract/event.js';
import type { EventProducer } from '../../sources/event-producer.js';
import { TrafficGenerator, type TrafficOptions } from './traffic.js';

export interface LoadgenRunOptions extends Omit<TrafficOptions, 'startMs'> {
  topic: string;
  /** Stop after this much wall-clock time (paced) or event time (unpaced). */
  durationMs?: number;
  /** Stop after this many deliveries. */
  count?: number;
  /**
   * Paced (default): deliveries leave at their arrival time on the wall clock, so the topic sees
   * `ratePerSec` events per second of real time. Unpaced: as fast as the broker takes them, with
   * event times from `startMs` on (backfills, benchmarks, reference logs spanning days).
   */
  paced?: boolean;
  startMs?: number;
  now?: () => number;
  onProgress?: (p: LoadgenProgress) => void;
  /** Checked between ticks; set by Ctrl-C handlers to stop cleanly. */
  signal?: AbortSignal;
}

export interface LoadgenProgress {
  produced: number;
  elapsedMs: number;
  /** Share done, 0..1, when a duration or count bounds the run. */
  fraction: number;
}

const TICK_MS = 10;

/** Drives a `TrafficGenerator` into Kafka. Returns how many events were queued. */
export async function runLoadgen(producer: EventProducer, options: LoadgenRunOptions): Promise<number> {
  const now = options.now ?? Date.now;
  const paced = options.paced ?? true;
  const wallStart = now();
  const startMs = options.startMs ?? wallStart;
  const generator = new TrafficGenerator({ ...options, startMs });
  const endArrival = options.durationMs === undefined ? Infinity : startMs + options.durationMs;
  const maxCount = options.count ?? Infinity;
  if (endArrival === Infinity && maxCount === Infinity) throw new RangeError('give a duration or a count');
  let produced = 0;
  let pending = generator.next();
  let lastProgress = wallStart;

  const fraction = (): number => {
    const byCount = maxCount === Infinity ? 0 : produced / maxCount;
    const byTime =
      endArrival === Infinity ? 0 : Math.min(1, ((paced ? now() : pending.arrivalMs) - startMs) / (endArrival - startMs));
    return Math.max(byCount, byTime);
  };

  while (produced < maxCount && pending.arrivalMs < endArrival && !options.signal?.aborted) {
    const horizon = paced ? startMs + (now() - wallStart) : Infinity;
    let inTick = 0;
    // Unpaced runs yield every few thousand events so progress and Ctrl-C stay responsive.
    while (pending.arrivalMs <= horizon && pending.arrivalMs < endArrival && produced < maxCount && inTick < 5_000) {
      await producer.produce(options.topic, pending.event.userId, encodeEvent(pending.event));
      produced++;
      inTick++;
      pending = generator.next();
    }
    if (options.onProgress && now() - lastProgress >= 1_000) {
      lastProgress = now();
      options.onProgress({ produced, elapsedMs: lastProgress - wallStart, fraction: fraction() });
    }
    if (paced) {
      const wait = Math.min(TICK_MS, Math.max(0, pending.arrivalMs - horizon));
      await new Promise((r) => setTimeout(r, wait));
    } else {
      await new Promise((r) => setImmediate(r));
    }
  }
  options.onProgress?.({ produced, elapsedMs: now() - wallStart, fraction: 1 });
  return produced;
}
