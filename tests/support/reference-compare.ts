import type { StateQueries } from '../../src/state/queries.js';
import { parseDay } from '../../src/time/calendar.js';
import {
  activeBetween,
  allDays,
  referenceCounter,
  referenceStage,
  referenceStreak,
  windowBounds,
  type RefResult,
  type RefSpec,
} from './reference-model.js';

/**
 * The engine's state, read back through its query side, against the brute-force reference
 * (tests/support/reference-model.ts), as tests/integration/state-reference.test.ts compares
 * it. Each function returns one line per mismatch, so a failure shows what differs and where.
 */

const WINDOWS = ['dau', 'wau', 'mau', 'week', 'month'] as const;

/** Every window of every day of every metric, and new users per day. */
export async function countMismatches(queries: StateQueries, ref: RefResult, spec: RefSpec): Promise<string[]> {
  const out: string[] = [];
  for (const day of allDays(ref)) {
    const d = parseDay(day);
    if (d === null) throw new Error(`reference produced a bad day ${day}`);
    for (const { name: metric } of spec.metrics) {
      for (const window of WINDOWS) {
        const got = await queries.active(metric, window, d);
        const { from, to } = windowBounds(window, day);
        const want = activeBetween(ref, metric, from, to);
        if (got.count !== want || got.from !== from || got.to !== to) {
          out.push(`${metric} ${window} ${day}: engine ${got.count} (${got.from}..${got.to}), reference ${want} (${from}..${to})`);
        }
      }
    }
    const newUsers = await queries.newUsers(d);
    const want = ref.newUsersByDay.get(day) ?? 0;
    if (newUsers !== want) out.push(`new users ${day}: engine ${newUsers}, reference ${want}`);
  }
  return out;
}

/** Every user's first/last seen, stage at `now`, best streaks and kept counter times. */
export async function userMismatches(queries: StateQueries, ref: RefResult, spec: RefSpec, now: number): Promise<string[]> {
  const out: string[] = [];
  for (const [userId, u] of ref.users) {
    const view = await queries.user(userId, now);
    if (view === null) {
      out.push(`${userId}: missing`);
      continue;
    }
    const want = {
      firstSeen: new Date(u.firstSeen).toISOString(),
      lastSeen: new Date(u.lastSeen).toISOString(),
      stage: referenceStage(u, now, spec),
      streaks: Object.fromEntries(spec.streaks.map((s) => [s.name, referenceStreak(u.streakDays.get(s.name) ?? []).best])),
      counters: Object.fromEntries(spec.counters.map((c) => [c.name, referenceCounter(u.counterTimes.get(c.name) ?? [], c.keep).map((t) => new Date(t).toISOString())])),
    };
    const got = {
      firstSeen: view.firstSeen,
      lastSeen: view.lastSeen,
      stage: view.stage,
      streaks: Object.fromEntries(spec.streaks.map((s) => [s.name, view.streaks[s.name]?.best ?? 0])),
      counters: Object.fromEntries(spec.counters.map((c) => [c.name, view.counters[c.name]?.times ?? []])),
    };
    if (JSON.stringify(got) !== JSON.stringify(want)) out.push(`${userId}: engine ${JSON.stringify(got)} reference ${JSON.stringify(want)}`);
  }
  return out;
}

/** How many users the reference puts in each lifecycle stage at `now`. */
export function referenceStageCounts(ref: RefResult, spec: RefSpec, now: number): Record<string, number> {
  const out: Record<string, number> = { new: 0, active: 0, dormant: 0, churned: 0, reactivated: 0 };
  for (const u of ref.users.values()) {
    const stage = referenceStage(u, now, spec);
    out[stage] = (out[stage] ?? 0) + 1;
  }
  return out;
}
