/** Reads of the bounded behaviour windows kept per user, as of a time `t`. */

/** Sum of a windowed sum as of `t`: the buckets that overlap (t - window, t]. */
export function windowSum(buckets: ReadonlyArray<[number, number]>, t: number, windowMs: number, bucketMs: number): number {
  let total = 0;
  for (const [b, v] of buckets) if (b + bucketMs > t - windowMs && b <= t) total += v;
  return total;
}

/** Matching events counted by a counter within `withinMs` before `t` (exact up to its `keep`). */
export function counterWithin(times: readonly number[], t: number, withinMs: number): number {
  let n = 0;
  for (const x of times) if (x > t - withinMs && x <= t) n++;
  return n;
}
