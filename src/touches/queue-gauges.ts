import type { Queue } from 'bullmq';
import { JOB_STATES, type TouchMetrics } from './touch-metrics.js';

/**
 * Samples the queue's job counts into `nudge_touch_jobs{state}` every `intervalMs` (one Lua call
 * per sample). Returns the function that stops it. A failed sample is skipped, not thrown.
 */
export function watchTouchQueue(queue: Queue, metrics: TouchMetrics, intervalMs = 5_000): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const sample = async () => {
    try {
      const counts = await queue.getJobCounts(...JOB_STATES);
      for (const state of JOB_STATES) metrics.jobs.set({ state }, counts[state] ?? 0);
    } catch {
      // Redis down: keep the last values; the relay and workers report the outage.
    }
    if (!stopped) timer = setTimeout(() => void sample(), intervalMs);
  };
  void sample();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
