import { DAY_MS, dayNumber, utcOffsetMs } from '../time/calendar.js';

/**
 * Local times of day in a user's zone, for step times ("at 10:00"), quiet hours and the usual
 * active hour. Minutes after local midnight stand for a time of day.
 */

const MINUTE_MS = 60_000;

/** The zone to read a user's local time in: their own when known, else the reporting zone. */
export function zoneOf(userTz: string, reportingTimeZone: string): string {
  return userTz !== '' ? userTz : reportingTimeZone;
}

/** Minutes after local midnight of `ms` in `tz` (0..1439). */
export function minuteOfDay(ms: number, tz: string): number {
  const local = ms + utcOffsetMs(ms, tz);
  return Math.floor((((local % DAY_MS) + DAY_MS) % DAY_MS) / MINUTE_MS);
}

/**
 * The instant of local time `minute` on local day `day`. On a daylight-saving change the
 * offset at the guess may differ from the offset at the answer, so it is corrected once; a
 * local time that does not exist (skipped by a spring-forward) lands an hour off, which is
 * the usual reading ("02:30" becomes 03:30).
 */
export function localTimeToUtc(day: number, minute: number, tz: string): number {
  const local = day * DAY_MS + minute * MINUTE_MS;
  const guess = local - utcOffsetMs(local, tz);
  return local - utcOffsetMs(guess, tz);
}

/** The first instant at or after `ms` whose local time in `tz` is `minute`. */
export function nextLocalTime(ms: number, minute: number, tz: string): number {
  const day = dayNumber(ms, tz);
  for (let d = day - 1; d <= day + 2; d++) {
    const t = localTimeToUtc(d, minute, tz);
    if (t >= ms) return t;
  }
  /* c8 ignore next */
  return localTimeToUtc(day + 1, minute, tz);
}
