import { localHour } from '../time/calendar.js';
import { nextLocalTime } from './local-time.js';
import type { StepTiming } from './rules-spec.js';

/** Fewer events than this and the usual active hour is not known yet. */
export const MIN_EVENTS_FOR_USUAL_HOUR = 5;
/** A histogram count this high halves every hour: recent habits outweigh old ones, and it stays small. */
const HOUR_COUNT_CEILING = 1000;

/**
 * When a step is sent: `base` plus its delay, then (with `at`) the next such local time in the
 * user's zone, or the next occurrence of the user's usual active hour (or the fallback time
 * while that is unknown; no wait without one).
 */
export function stepSendAt(timing: StepTiming, base: number, tz: string, activeHours: readonly number[] | null): number {
  const t = base + timing.delayMs;
  if (timing.at === null) return t;
  let minute: number | null;
  if (timing.at === 'usualActiveHour') {
    const hour = usualActiveHour(activeHours);
    minute = hour !== null ? hour * 60 : timing.fallbackAt;
  } else {
    minute = timing.at;
  }
  return minute === null ? t : nextLocalTime(t, minute, tz);
}

/** The local hour with the most events (the earliest on a tie), or null with too little history. */
export function usualActiveHour(hours: readonly number[] | null): number | null {
  if (hours === null || hours.length !== 24) return null;
  let total = 0;
  let best = 0;
  for (let h = 0; h < 24; h++) {
    const n = hours[h] ?? 0;
    total += n;
    if (n > (hours[best] ?? 0)) best = h;
  }
  return total >= MIN_EVENTS_FOR_USUAL_HOUR ? best : null;
}

/**
 * Adds an event at `ms` to the user's hour-of-day histogram (for the state step to keep).
 * Returns a new array of 24 counts.
 */
export function recordActiveHour(hours: readonly number[] | null | undefined, ms: number, tz: string): number[] {
  const out = hours && hours.length === 24 ? [...hours] : new Array<number>(24).fill(0);
  const h = localHour(ms, tz);
  out[h] = (out[h] ?? 0) + 1;
  if ((out[h] ?? 0) >= HOUR_COUNT_CEILING) for (let i = 0; i < 24; i++) out[i] = Math.floor((out[i] ?? 0) / 2);
  return out;
}
