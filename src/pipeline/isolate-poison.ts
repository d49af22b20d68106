import { isNudgeError } from '../errors.js';

/** An input the step throws on, by its position in the batch, with what it threw. */
export interface Poisoned {
  index: number;
  error: unknown;
}

export interface Isolated<R> {
  /** The step's result over every item but the poisoned ones, in their original order. */
  result: R;
  /** Ascending by index; empty on the normal path. */
  poisoned: Poisoned[];
}

/**
 * Runs a pure batch step over `items`; when it throws, finds the items it throws on and runs
 * it over the rest, so one bad event costs its own dead letter instead of its lane's progress.
 *
 * The step is applied in order and is deterministic (STYLE habit 3), so "the step over the
 * first k items throws" is monotonic in k and the first poisoned item is found by a galloping
 * then binary search over prefixes. An item is judged in the context the real batch gives it
 * (the states the items before it built), never alone: an event that only fails on top of an
 * earlier one of the same user is found, and one that would fail alone but not in its place
 * is not blamed. The prefix before a found item passed and stays valid once the item is
 * removed, so the next search starts there.
 *
 * Cost: one step call on the normal path. With p poisoned items a few more calls per item;
 * even a batch where every item throws stays O(n) item applications, and the worst case (good
 * and bad interleaved) O(n²) — a bug that bad is rare and still does not stall the lane.
 *
 * Throws only when the step fails on an empty batch: that is a broken step or spec, not a
 * poison event, and no isolation can help.
 */
export function isolatePoison<T, R>(items: readonly T[], run: (subset: readonly T[]) => R): Isolated<R> {
  const first = attempt(run, items);
  if (first.ok) return { result: first.value, poisoned: [] };

  const keep = items.map((_, i) => i);
  const poisoned: Poisoned[] = [];
  const prefix = (length: number): T[] => keep.slice(0, length).map((i) => items[i] as T);
  let passing = 0; // the first `passing` kept items are known to pass together
  let failure: unknown = first.error; // what the step threw on all of `keep`
  for (;;) {
    if (keep.length === 0) throw failure;
    // The shortest failing prefix lies in (passing, keep.length]: gallop, then bisect.
    let lo = passing;
    let hi = keep.length;
    let hiError = failure;
    for (let stride = 1; lo + stride < hi; stride *= 2) {
      const probe = attempt(run, prefix(lo + stride));
      if (!probe.ok) {
        hi = lo + stride;
        hiError = probe.error;
        break;
      }
      lo += stride;
    }
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      const probe = attempt(run, prefix(mid));
      if (probe.ok) lo = mid;
      else {
        hi = mid;
        hiError = probe.error;
      }
    }
    const [index] = keep.splice(hi - 1, 1) as [number];
    poisoned.push({ index, error: hiError });
    passing = hi - 1;
    const rest = attempt(run, keep.map((i) => items[i] as T));
    if (rest.ok) return { result: rest.value, poisoned };
    failure = rest.error;
  }
}

type Attempt<R> = { ok: true; value: R } | { ok: false; error: unknown };

function attempt<T, R>(run: (subset: readonly T[]) => R, subset: readonly T[]): Attempt<R> {
  try {
    return { ok: true, value: run(subset) };
  } catch (error) {
    return { ok: false, error };
  }
}

/**
 * What a step threw, for a dead-letter header or a log line, without personal data. Messages of
 * errors Nudge raises on purpose are written not to carry personal data (see errors.ts), so
 * they are kept; any other message may quote event fields (a `RangeError` naming a time zone, a
 * `TypeError` quoting a property), so only the error's class and the code location that threw
 * are kept — a dead letter holds the original bytes to reproduce it with.
 */
export function describeFailure(error: unknown): string {
  if (isNudgeError(error)) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return `${error.name}${throwSite(error)}`;
  return `a thrown ${error === null ? 'null' : typeof error}`;
}

/** " at decide.ts:123:45" for the innermost stack frame with a file location, or "". */
function throwSite(error: Error): string {
  for (const line of (error.stack ?? '').split('\n').slice(1)) {
    const m = /([^/\\\s(]+\.[cm]?[jt]s):(\d+):(\d+)\)?\s*$/.exec(line);
    if (m) return ` at ${m[1]}:${m[2]}:${m[3]}`;
  }
  return '';
}
