import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../src/config/duration.js';

describe('parseDuration', () => {
  it.each([
    [0, 0],
    [1500, 1500],
    ['1500', 1500], // a bare digit string is ms, like the number (env values are strings)
    ['500ms', 500],
    ['30s', 30_000],
    ['30m', 1_800_000],
    ['2h', 7_200_000],
    ['14d', 1_209_600_000],
    ['1w', 604_800_000],
    ['1h30m', 5_400_000],
    ['1d12h', 129_600_000],
    ['1m30s250ms', 90_250],
    ['1.5h', 5_400_000],
    ['0.5s', 500],
    ['  30m  ', 1_800_000],
  ])('%j -> %d ms', (input, expected) => {
    expect(parseDuration(input)).toBe(expected);
  });

  it.each([
    '',
    '30 minutes',
    'm',
    '30M', // months or minutes? refused rather than guessed
    '30min',
    '1h 30m', // no spaces inside
    '30m1h', // largest unit first
    '1h1h', // each unit once
    '-5m',
    '0.5ms', // not a whole number of ms
    '1e3ms',
    'PT30M',
  ])('refuses %j', (input) => {
    expect(parseDuration(input)).toBeNull();
  });

  it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53])('refuses the number %d', (input) => {
    expect(parseDuration(input)).toBeNull();
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0ms'],
    [500, '500ms'],
    [1_500, '1s500ms'],
    [1_800_000, '30m'],
    [5_400_000, '1h30m'],
    [1_209_600_000, '14d'],
    [-300_000, '-5m'],
  ])('%d -> %s', (ms, expected) => {
    expect(formatDuration(ms)).toBe(expected);
  });

  it('round-trips through parseDuration for any whole number of milliseconds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (ms) => {
        expect(parseDuration(formatDuration(ms))).toBe(ms);
      }),
    );
  });
});
