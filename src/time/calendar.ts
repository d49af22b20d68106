/**
 * Calendar arithmetic in a time zone, on "day numbers": whole days since 1970-01-01 of the
 * local date. Activity windows, streaks and lifecycle work on day numbers because they are
 * cheap to compare and store (a user's recent active days fit in a small array).
 *
 * Intl is slow (microseconds per call), so the UTC offset is cached per zone and quarter hour
 * (the latest one at hand, the last 4,096 in a map): an offset never changes inside an hour in any
 * zone that exists today (transitions happen on the hour or half hour, at quarter-hour offsets
 * at worst — the cache key is the quarter hour to stay exact for those).
 */
export const DAY_MS = 86_400_000;
const QUARTER_HOUR_MS = 900_000;

interface OffsetCache {
  formatter: Intl.DateTimeFormat;
  slot: number;
  offsetMs: number;
  /** Earlier quarter hours: a batch mixes users' event times (and late events) across hours. */
  slots: Map<number, number>;
}

const caches = new Map<string, OffsetCache>();
const MAX_ZONES = 1_000;
const MAX_SLOTS = 4_096;
// The zone of the previous call: most calls in a batch name the reporting zone (the same string),
// and an identity test is cheaper than hashing it into the map.
let lastZone = '';
let lastCache: OffsetCache | undefined;

/** The zone's offset from UTC at `ms`, in ms (positive east of Greenwich). */
export function utcOffsetMs(ms: number, timeZone: string): number {
  let cache = timeZone === lastZone ? lastCache : caches.get(timeZone);
  if (cache === undefined) {
    if (caches.size >= MAX_ZONES) caches.clear();
    cache = {
      formatter: new Intl.DateTimeFormat('en-US', {
        timeZone,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
      }),
      slot: NaN,
      offsetMs: 0,
      slots: new Map(),
    };
    caches.set(timeZone, cache);
  }
  lastZone = timeZone;
  lastCache = cache;
  const slot = Math.floor(ms / QUARTER_HOUR_MS);
  if (slot === cache.slot) return cache.offsetMs;
  const known = cache.slots.get(slot);
  if (known !== undefined) {
    cache.slot = slot;
    cache.offsetMs = known;
    return known;
  }
  {
    const base = slot * QUARTER_HOUR_MS;
    let y = 0, mo = 0, d = 0, h = 0, mi = 0;
    for (const p of cache.formatter.formatToParts(base)) {
      if (p.type === 'year') y = Number(p.value);
      else if (p.type === 'month') mo = Number(p.value);
      else if (p.type === 'day') d = Number(p.value);
      else if (p.type === 'hour') h = Number(p.value);
      else if (p.type === 'minute') mi = Number(p.value);
    }
    cache.slot = slot;
    cache.offsetMs = Date.UTC(y, mo - 1, d, h, mi) - base;
    if (cache.slots.size >= MAX_SLOTS) cache.slots.clear();
    cache.slots.set(slot, cache.offsetMs);
  }
  return cache.offsetMs;
}

/** True when `timeZone` is an IANA zone this runtime knows. */
export function isValidTimeZone(timeZone: string): boolean {
  if (timeZone === '') return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}

/** Day number of the local date of `ms` in `timeZone`. */
export function dayNumber(ms: number, timeZone: string): number {
  return Math.floor((ms + utcOffsetMs(ms, timeZone)) / DAY_MS);
}

/** Local hour of day (0-23) of `ms` in `timeZone`. */
export function localHour(ms: number, timeZone: string): number {
  const local = ms + utcOffsetMs(ms, timeZone);
  return Math.floor((((local % DAY_MS) + DAY_MS) % DAY_MS) / 3_600_000);
}

/** The UTC instant at which local day `day` starts in `timeZone`. */
export function dayStartMs(day: number, timeZone: string): number {
  // The offset at local midnight can differ from the offset 12 hours earlier (DST): try the
  // guess, then correct once with the offset at the guessed instant.
  const guess = day * DAY_MS - utcOffsetMs(day * DAY_MS, timeZone);
  return day * DAY_MS - utcOffsetMs(guess, timeZone);
}

/** ISO weekday of a day number: Monday = 0 ... Sunday = 6. (1970-01-01 was a Thursday.) */
export function isoWeekday(day: number): number {
  return (((day + 3) % 7) + 7) % 7;
}

/** The day number of the Monday starting the ISO week that contains `day`. */
export function isoWeekStart(day: number): number {
  return day - isoWeekday(day);
}

/** Months since 1970-01 (year * 12 + month - 1 - 1970 * 12) of a day number. */
export function monthIndex(day: number): number {
  const d = new Date(day * DAY_MS);
  return (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth();
}

/** First and last day numbers of a month index. */
export function monthRange(month: number): { from: number; to: number } {
  const y = 1970 + Math.floor(month / 12);
  const m = ((month % 12) + 12) % 12;
  const from = Date.UTC(y, m, 1) / DAY_MS;
  const to = Date.UTC(y, m + 1, 1) / DAY_MS - 1;
  return { from, to };
}

/** `YYYY-MM-DD` of a day number. */
export function formatDay(day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10);
}

/** Day number of `YYYY-MM-DD`, or null when it is not a real date. */
export function parseDay(text: string): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (!m) return null;
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  const day = ms / DAY_MS;
  return formatDay(day) === text ? day : null;
}
