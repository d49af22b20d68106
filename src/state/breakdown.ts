import type { AppEvent } from '../contract/event.js';
import { STATE_BOUNDS, type BreakdownSpec } from './spec.js';

/** The value that holds what a breakdown does not list (exact) or no longer has room for (HLL). */
export const OTHER = 'other';
/** The value of events without a channel, or users without the trait. */
export const UNKNOWN = 'unknown';

/**
 * Which value of a breakdown an event counts under: the event's channel, or the user's trait
 * as it stands after the event (so the event that sets a trait counts under it).
 */
export function breakdownValue(b: BreakdownSpec, e: AppEvent, traits: Readonly<Record<string, string>>): string {
  const raw = b.source.kind === 'channel' ? e.channel : (traits[b.source.key] ?? '');
  if (raw === '') return UNKNOWN;
  if (b.values !== null) return b.values.has(raw) ? raw : OTHER;
  return raw;
}

/** The per-user key of an exact breakdown's active-day list, or of an HLL add already made. */
export function breakdownKey(metric: string, breakdown: string, value: string): string {
  return `${metric}/${breakdown}/${value}`;
}

/**
 * Records that the user was added to the HyperLogLog of (metric, breakdown, value) on `day`;
 * returns false when that was already done (the add is idempotent, this only saves the work).
 * Keeps at most `STATE_BOUNDS.hllSeen` entries, forgetting the oldest day first.
 */
export function markHllSeen(seen: Record<string, number>, key: string, day: number): boolean {
  if (seen[key] === day) return false;
  seen[key] = day;
  const keys = Object.keys(seen);
  if (keys.length > STATE_BOUNDS.hllSeen) {
    let oldest = keys[0] as string;
    for (const k of keys) if ((seen[k] as number) < (seen[oldest] as number)) oldest = k;
    delete seen[oldest];
  }
  return true;
}

/** The values an exact breakdown answers with: the listed ones, then "other" and "unknown". */
export function exactValues(b: BreakdownSpec): string[] {
  return b.values === null ? [] : [...b.values, OTHER, UNKNOWN];
}
