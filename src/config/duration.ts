/**
 * Durations in the config: `500ms`, `30s`, `30m`, `2h`, `14d`, `1w`, compounds such as `1h30m`,
 * or a plain integer number of milliseconds.
 *
 * Lower-case units only: `M` would be read as months by half the people who type it. Units in a
 * compound must go from largest to smallest, each at most once (`1h30m`, not `30m1h` or `1h1h`),
 * and there is no space inside (`1h 30m` is refused), so every value has one obvious reading.
 * Decimal amounts are accepted (`1.5h`) as long as the result is a whole number of milliseconds.
 */

const UNIT_MS = {
  w: 7 * 24 * 60 * 60 * 1000,
  d: 24 * 60 * 60 * 1000,
  h: 60 * 60 * 1000,
  m: 60 * 1000,
  s: 1000,
  ms: 1,
} as const;

type Unit = keyof typeof UNIT_MS;

/** Largest first; the order a compound must follow. */
const UNIT_ORDER: readonly Unit[] = ['w', 'd', 'h', 'm', 's', 'ms'];


/** Milliseconds for `input`, or null when it is not a duration (negative, fractional ms, junk). */
export function parseDuration(input: string | number): number | null {
  if (typeof input === 'number') {
    return Number.isSafeInteger(input) && input >= 0 ? input : null;
  }
  const text = input.trim();
  if (text === '') return null;
  // A bare digit string is milliseconds, the same as the number would be (env values are strings).
  if (/^\d+$/.test(text)) return parseDuration(Number(text));

  // Sticky, so parts must follow each other with nothing in between; `ms` is tried before `m`
  // and `s`. A new RegExp per call because a sticky regex carries state in `lastIndex`.
  const part = /(\d+(?:\.\d+)?)(ms|w|d|h|m|s)/y;
  let total = 0;
  let lastUnitIndex = -1;
  while (part.lastIndex < text.length) {
    const match = part.exec(text);
    if (!match) return null;
    const unit = match[2] as Unit;
    const unitIndex = UNIT_ORDER.indexOf(unit);
    if (unitIndex <= lastUnitIndex) return null;
    lastUnitIndex = unitIndex;
    total += Number(match[1]) * UNIT_MS[unit];
  }
  // Decimal parts can leave float noise (0.1h); accept what is within a microsecond of whole ms.
  const rounded = Math.round(total);
  if (Math.abs(total - rounded) > 1e-3 || !Number.isSafeInteger(rounded)) return null;
  return rounded;
}

/**
 * The shortest compound form of `ms` (`5400000` -> `1h30m`, `0` -> `0ms`). Weeks are not used:
 * `14d` reads better than `2w` in a log line. `parseDuration(formatDuration(x)) === x` for every
 * non-negative safe integer.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 0) return `-${formatDuration(-ms)}`;
  let rest = Math.round(ms);
  if (rest === 0) return '0ms';
  let out = '';
  for (const unit of ['d', 'h', 'm', 's', 'ms'] as const) {
    const size = UNIT_MS[unit];
    const count = Math.floor(rest / size);
    if (count > 0) {
      out += `${count}${unit}`;
      rest -= count * size;
    }
  }
  return out;
}
