import { dayNumber, isoWeekStart, monthIndex } from '../time/calendar.js';
import type { TouchRecord } from './journey-state.js';
import type { PolicySpec } from './rules-spec.js';

export type CapResult = { ok: true } | { ok: false; reason: 'cap_channel' | 'cap_all_channels' | 'min_gap'; detail: string };

/**
 * Checks a touch on `channel` at `sendAt` against every cap and the minimum gap, given the
 * user's touch history (send times). Every applicable cap must allow it: the most restrictive
 * wins. Calendar periods are read in `tz`, the user's zone.
 */
export function checkCaps(policy: PolicySpec, history: readonly TouchRecord[], channel: string, sendAt: number, tz: string): CapResult {
  for (const cap of policy.caps) {
    if (cap.channels.length > 0 && !cap.channels.includes(channel)) continue;
    const times = history.filter((h) => cap.channels.length === 0 || cap.channels.includes(h.channel)).map((h) => h.at);
    const used = cap.window.kind === 'rolling' ? busiestWindow(times, sendAt, cap.window.ms) : samePeriod(times, sendAt, cap.window.period, tz);
    if (used >= cap.max) return { ok: false, reason: cap.channels.length > 0 ? 'cap_channel' : 'cap_all_channels', detail: cap.name };
  }
  if (policy.minGapMs !== null) {
    const gap = policy.minGapMs;
    if (history.some((h) => Math.abs(h.at - sendAt) < gap)) return { ok: false, reason: 'min_gap', detail: `minGap ${gap}ms` };
  }
  return { ok: true };
}

/**
 * The most touches already in any rolling window of `windowMs` that would also hold `sendAt`.
 * Touches may be scheduled ahead (deferred, delayed), so windows after `sendAt` count too: a
 * touch is refused when some window [x, x + W) with x in (sendAt - W, sendAt] would exceed the
 * cap. The count only changes where a touch enters or leaves the window, so the busiest start
 * is one of: just after sendAt - W, a touch in (sendAt - W, sendAt], sendAt itself, or the start
 * that just reaches a touch scheduled ahead, t - W + 1 for t in (sendAt, sendAt + W).
 * (Regression: the last two were missing, so a touch 53 s before one already scheduled was
 * allowed under "1 per minute" — tests/integration/journeys-reference.test.ts.)
 */
function busiestWindow(times: readonly number[], sendAt: number, windowMs: number): number {
  const near = times.filter((t) => t > sendAt - windowMs && t < sendAt + windowMs);
  const starts = [
    sendAt - windowMs + 1,
    sendAt,
    ...near.filter((t) => t <= sendAt),
    ...near.filter((t) => t > sendAt).map((t) => t - windowMs + 1),
  ];
  let most = 0;
  for (const x of starts) {
    let n = 0;
    for (const t of near) if (t >= x && t < x + windowMs) n++;
    if (n > most) most = n;
  }
  return most;
}

function samePeriod(times: readonly number[], sendAt: number, period: 'day' | 'week' | 'month', tz: string): number {
  const key = (ms: number) => {
    const day = dayNumber(ms, tz);
    return period === 'day' ? day : period === 'week' ? isoWeekStart(day) : monthIndex(day);
  };
  const target = key(sendAt);
  return times.filter((t) => key(t) === target).length;
}
