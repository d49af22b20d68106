import { minuteOfDay, nextLocalTime } from './local-time.js';
import type { PolicySpec } from './rules-spec.js';

type QuietHours = NonNullable<PolicySpec['quietHours']>;

/**
 * Whether `ms` falls in quiet hours in `tz` ([from, to), over midnight when to < from), and
 * when they end. Quiet hours that do not apply to `channel` are never quiet.
 */
export function quietHoursAt(q: QuietHours | null, channel: string, ms: number, tz: string): { quiet: false } | { quiet: true; endsAt: number } {
  if (q === null || (q.channels.length > 0 && !q.channels.includes(channel))) return { quiet: false };
  const m = minuteOfDay(ms, tz);
  const quiet = q.fromMinute < q.toMinute ? m >= q.fromMinute && m < q.toMinute : m >= q.fromMinute || m < q.toMinute;
  return quiet ? { quiet: true, endsAt: nextLocalTime(ms, q.toMinute, tz) } : { quiet: false };
}
