import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

/** CPU time of this whole process (JS thread, GC, libuv and librdkafka threads), in µs. */
export function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/**
 * Peak resident set size, sampled every `intervalMs`. A sampler, so it can miss a spike shorter
 * than the interval; good enough for "does a backlog blow memory up".
 */
export class RssSampler {
  private peakBytes = 0;
  private timer: NodeJS.Timeout | null = null;

  start(intervalMs = 100): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
    return this;
  }

  /** Peak so far, in MB (10^6 bytes). */
  peakMb(): number {
    this.sample();
    return this.peakBytes / 1e6;
  }

  stop(): number {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    return this.peakMb();
  }

  private sample(): void {
    const rss = process.memoryUsage.rss();
    if (rss > this.peakBytes) this.peakBytes = rss;
  }
}

/**
 * CPU seconds the Redis server has used since it started (INFO cpu: used_cpu_sys + used_cpu_user,
 * all its threads). Only meaningful per event when nobody else uses that server: with REDIS_URL
 * pointing at a shared one, others' load is counted too.
 */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info);
    if (!m) throw new Error(`INFO cpu has no ${name}: ${info.slice(0, 200)}`);
    return Number(m[1]);
  };
  return field('used_cpu_sys') + field('used_cpu_user');
}

/** Wall-clock ms with sub-ms resolution, for durations. */
export function nowMs(): number {
  return performance.now();
}

/**
 * Scheduler accounting of this process's main (JS) thread, from Linux's /proc/self/schedstat:
 * ns spent running and ns spent runnable but waiting for a CPU. The wait share over a window says
 * how much of a latency or throughput figure is other processes' load rather than our code.
 * null where there is no /proc (not Linux).
 */
export function mainThreadSched(): { runNs: number; waitNs: number } | null {
  try {
    const [run, wait] = readFileSync('/proc/self/schedstat', 'utf8').trim().split(/\s+/).map(Number);
    return run === undefined || wait === undefined ? null : { runNs: run, waitNs: wait };
  } catch {
    return null;
  }
}

/** Share of a wall-clock window (ms) the main thread spent waiting for a CPU, 0..1; NaN if unknown. */
export function waitShare(a: { waitNs: number } | null, b: { waitNs: number } | null, windowMs: number): number {
  if (a === null || b === null || windowMs <= 0) return NaN;
  return (b.waitNs - a.waitNs) / 1e6 / windowMs;
}

/**
 * CPU time per kind of thread of this process (µs, from /proc/self/task/{id}/schedstat), keyed
 * by thread name with digits dropped: "js" is the JS thread, "other" Node's unnamed threads (V8's
 * GC and compiler helpers, the thread pool), "rdk:..." librdkafka's. Empty off Linux.
 */
export function threadCpuMicros(): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const id of readdirSync('/proc/self/task')) {
      try {
        const comm = readFileSync(`/proc/self/task/${id}/comm`, 'utf8').trim().replace(/[0-9]+/g, '#');
        // Node names few of its threads: the JS thread is the one whose id is the process id.
        const name = Number(id) === process.pid ? 'js' : comm === 'node' ? 'other' : comm;
        const run = Number(readFileSync(`/proc/self/task/${id}/schedstat`, 'utf8').split(' ')[0]);
        out[name] = (out[name] ?? 0) + run / 1000;
      } catch {
        // the thread ended meanwhile
      }
    }
  } catch {
    // not Linux
  }
  return out;
}

/** b - a per thread kind, rounded µs. */
export function threadCpuDelta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(b)) out[k] = Math.round((b[k] ?? 0) - (a[k] ?? 0));
  return out;
}
