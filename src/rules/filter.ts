import type { AppEvent } from '../contract/event.js';
import type { Filter, NumberRange, PropTest } from './rules-spec.js';

/** The parts of an event a filter reads. */
export type FilterableEvent = Pick<AppEvent, 'name' | 'channel' | 'props' | 'value'>;

/** True when the event passes every part of the filter (an empty part passes anything). */
export function matchesFilter(f: Filter, e: FilterableEvent): boolean {
  if (f.names.length > 0 && !f.names.includes(e.name)) return false;
  if (f.channels.length > 0 && !f.channels.includes(e.channel)) return false;
  if (f.value !== null && !inRange(f.value, e.value)) return false;
  for (const { key, test } of f.props) {
    // props is a null-prototype object: a key such as "constructor" is plain data.
    if (!propPasses(test, Object.prototype.hasOwnProperty.call(e.props, key) ? e.props[key] : undefined)) return false;
  }
  return true;
}

function propPasses(test: PropTest, value: string | undefined): boolean {
  switch (test.kind) {
    case 'exists':
      return (value !== undefined) === test.present;
    case 'equals':
      return value === test.value;
    case 'in':
      return value !== undefined && test.values.includes(value);
    case 'range': {
      // A prop that is not a number never passes a comparison ("" would read as 0).
      if (value === undefined || value.trim() === '') return false;
      const n = Number(value);
      return Number.isFinite(n) && inRange(test.range, n);
    }
  }
}

export function inRange(r: NumberRange, n: number): boolean {
  if (r.gt !== undefined && !(n > r.gt)) return false;
  if (r.gte !== undefined && !(n >= r.gte)) return false;
  if (r.lt !== undefined && !(n < r.lt)) return false;
  if (r.lte !== undefined && !(n <= r.lte)) return false;
  return true;
}
