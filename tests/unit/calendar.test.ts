import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dayNumber, dayStartMs, formatDay, isoWeekStart, localHour, monthRange, parseDay, utcOffsetMs } from '../../src/time/calendar.js';

describe('calendar', () => {
  it('gives the local date in a zone, around midnight', () => {
    // 2026-11-22 16:30 UTC is 2026-11-23 00:30 in Shanghai (UTC+8, no DST).
    const t = Date.UTC(2026, 10, 22, 16, 30);
    expect(formatDay(dayNumber(t, 'Asia/Shanghai'))).toBe('2026-11-23');
    expect(formatDay(dayNumber(t, 'UTC'))).toBe('2026-11-22');
    expect(formatDay(dayNumber(t, 'America/New_York'))).toBe('2026-11-22');
    expect(localHour(t, 'Asia/Shanghai')).toBe(0);
  });

  it('follows daylight saving changes', () => {
    // New York: EDT (-4) until 2026-11-01 06:00 UTC, then EST (-5).
    expect(utcOffsetMs(Date.UTC(2026, 10, 1, 5, 59), 'America/New_York')).toBe(-4 * 3_600_000);
    expect(utcOffsetMs(Date.UTC(2026, 10, 1, 6, 0), 'America/New_York')).toBe(-5 * 3_600_000);
    expect(utcOffsetMs(Date.UTC(2026, 6, 1), 'Asia/Kolkata')).toBe(5.5 * 3_600_000);
    expect(new Date(dayStartMs(parseDay('2026-11-01')!, 'America/New_York')).toISOString()).toBe('2026-11-01T04:00:00.000Z');
    expect(new Date(dayStartMs(parseDay('2026-11-02')!, 'America/New_York')).toISOString()).toBe('2026-11-02T05:00:00.000Z');
  });

  it('finds ISO weeks (Monday first) and calendar months', () => {
    expect(formatDay(isoWeekStart(parseDay('2026-11-23')!))).toBe('2026-11-23'); // a Monday
    expect(formatDay(isoWeekStart(parseDay('2026-11-29')!))).toBe('2026-11-23'); // Sunday
    expect(formatDay(isoWeekStart(parseDay('2027-01-01')!))).toBe('2026-12-28');
    const feb = monthRange((2028 - 1970) * 12 + 1);
    expect([formatDay(feb.from), formatDay(feb.to)]).toEqual(['2028-02-01', '2028-02-29']);
  });

  it('parses only real dates', () => {
    expect(parseDay('2026-02-29')).toBeNull();
    expect(parseDay('2026-2-3')).toBeNull();
    expect(formatDay(parseDay('2024-02-29')!)).toBe('2024-02-29');
  });
});

describe('utcOffsetMs cache', () => {
  // Straight from Intl, no cache: the local wall time at `ms` read as if it were UTC, minus `ms`.
  const reference = (ms: number, zone: string): number => {
    const parts = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' }).formatToParts(ms);
    const n = (t: string) => Number(parts.find((p) => p.type === t)?.value);
    return Date.UTC(n('year'), n('month') - 1, n('day'), n('hour'), n('minute'), n('second')) - Math.floor(ms / 1000) * 1000;
  };
  const zones = ['UTC', 'Asia/Shanghai', 'America/New_York', 'Europe/Berlin', 'Australia/Lord_Howe', 'Asia/Kathmandu', 'America/St_Johns', 'Pacific/Chatham'];

  it('agrees with Intl for times in any order across zones, daylight-saving changes included (random walk)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: Date.UTC(2025, 0, 1), max: Date.UTC(2027, 0, 1) }), fc.constantFrom(...zones)), { minLength: 1, maxLength: 200 }),
        (calls) => {
          for (const [ms, zone] of calls) expect(utcOffsetMs(ms, zone), `${new Date(ms).toISOString()} ${zone}`).toBe(reference(ms, zone));
        },
      ),
      { numRuns: 200 },
    );
  });
});
