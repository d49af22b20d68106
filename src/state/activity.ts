import { isoWeekStart, monthIndex } from '../time/calendar.js';
import { STATE_BOUNDS } from './spec.js';

/** The activity windows counted per metric (DESIGN §4 and §2.3). */
export type ActivityWindow = 'dau' | 'wau' | 'mau' | 'week' | 'month';
export const ROLLING_DAYS: Readonly<Record<'dau' | 'wau' | 'mau', number>> = { dau: 1, wau: 7, mau: 30 };

/**
 * A counter to increment: the window and its period id — the end day for dau/wau/mau, the
 * Monday's day number for `week`, the month index for `month`.
 */
export interface WindowIncrement {
  window: ActivityWindow;
  period: number;
}

/**
 * Which window counters a user enters by being active on `day`, given the days they were
 * already active on (ascending, `day` not among them).
 *
 * Exact counting without sets: the count of a window is the number of users with at least one
 * active day in it, so a user adds one to a window exactly when `day` is their first active
 * day inside it. For a rolling window of W days ending on e, that is when no other active day
 * lies in [e-W+1, e]; with `prev` the nearest earlier active day and `next` the nearest later
 * one, the new windows are those ending on e in [max(day, prev+W), min(day+W-1, next-1)].
 * A user active every day thus adds one increment per window per day.
 */
export function windowIncrements(activeDays: readonly number[], day: number): WindowIncrement[] {
  let prev = -Infinity;
  let next = Infinity;
  for (const d of activeDays) {
    if (d < day) prev = d;
    else if (d > day) {
      next = d;
      break;
    }
  }
  const out: WindowIncrement[] = [];
  for (const window of ['dau', 'wau', 'mau'] as const) {
    const w = ROLLING_DAYS[window];
    const from = Math.max(day, prev + w);
    const to = Math.min(day + w - 1, next - 1);
    for (let e = from; e <= to; e++) out.push({ window, period: e });
  }
  const week = isoWeekStart(day);
  if (!activeDays.some((d) => isoWeekStart(d) === week)) out.push({ window: 'week', period: week });
  const month = monthIndex(day);
  if (!activeDays.some((d) => monthIndex(d) === month)) out.push({ window: 'month', period: month });
  return out;
}

/**
 * Adds `day` to the ascending list and drops days too old to matter for any window (more than
 * `STATE_BOUNDS.activeDays` before the newest), so a user's state stays bounded.
 */
export function addActiveDay(activeDays: readonly number[], day: number): number[] {
  const out = [...activeDays, day].sort((a, b) => a - b);
  const newest = out[out.length - 1] as number;
  const oldest = newest - STATE_BOUNDS.activeDays + 1;
  let start = 0;
  while ((out[start] as number) < oldest) start++;
  return start === 0 ? out : out.slice(start);
}

/** Buckets of the days-between-visits histogram (DOMAIN: "average gap between visits"). */
export const GAP_BUCKETS = ['1', '2', '3', '4-7', '8-14', '15-30', '31+'] as const;
export type GapBucket = (typeof GAP_BUCKETS)[number];

export function gapBucket(days: number): GapBucket {
  if (days <= 3) return String(Math.max(1, days)) as GapBucket;
  if (days <= 7) return '4-7';
  if (days <= 14) return '8-14';
  if (days <= 30) return '15-30';
  return '31+';
}
