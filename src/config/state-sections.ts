import { z } from 'zod';
import { parseDuration } from './duration.js';

/**
 * The config sections of the streaming state core: activity metrics, lifecycle thresholds and
 * per-user behaviour (counters, windowed sums, streaks, traits). Kept beside schema.ts so that
 * file stays about connections; the wording of expectations follows it.
 */

const NAME = /^[a-z][a-z0-9_]{0,31}$/;
const EVENT_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

const name = z.string().regex(NAME, 'expected a name of lower-case letters, digits and "_" (at most 32, starting with a letter)');
const eventName = z.string().regex(EVENT_NAME, 'expected an event name (letters, digits, "_", ".", ":", "-"; at most 64)');

const durationMs = (fallback: string | undefined, min = 1) => {
  const base = z.unknown().transform((v, ctx): number => {
    const ms = typeof v === 'string' || typeof v === 'number' ? parseDuration(v) : null;
    if (ms === null || ms < min) {
      ctx.addIssue({ code: 'custom', message: `expected a duration like "30m", got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return ms;
  });
  return fallback === undefined ? base : base.prefault(fallback);
};

/** Which events a counter, sum or streak looks at. */
const matchSchema = z.strictObject({
  /** An event name or a list of them; absent = any event. */
  name: z.union([eventName, z.array(eventName).min(1).max(32)]).optional(),
  /** Props that must be equal (all of them). */
  props: z.record(z.string().max(64), z.string().max(512)).optional(),
  /** The channel that must be equal. */
  channel: z.string().max(32).optional(),
});

function uniqueNames(list: readonly { name: string }[], ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  list.forEach((item, i) => {
    if (seen.has(item.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `"${item.name}" is used twice; names must be unique` });
    seen.add(item.name);
  });
}

export const activitySchema = z.strictObject({
  /**
   * Default: `active` (any event) and `financial` (transfer_done, fund_purchase, payment).
   * Each metric yields exact DAU/WAU/MAU and ISO-week and calendar-month counts.
   */
  metrics: z
    .array(
      z.strictObject({
        name,
        /** Event names that count; absent = any event. */
        events: z.array(eventName).min(1).max(64).optional(),
      }),
    )
    .min(1)
    .max(16)
    .superRefine(uniqueNames)
    .default([{ name: 'active' }, { name: 'financial', events: ['transfer_done', 'fund_purchase', 'payment'] }]),
  /**
   * Default none. Each breakdown splits every metric's counts by the event's channel or by one
   * of the user's traits. With `values` listed the split is exact (anything else counts as
   * "other", a missing value as "unknown"); without, it is HyperLogLog (about 1% error, up to
   * `maxValues` distinct values per lane, the rest as "other") and answers say `exact: false`.
   */
  breakdowns: z
    .array(
      z
        .strictObject({
          name,
          by: z.enum(['channel', 'trait']),
          /** The trait key, when `by: trait` (one of behaviour.traits). */
          trait: z.string().min(1).max(64).optional(),
          values: z.array(z.string().min(1).max(64)).min(1).max(16).optional(),
          /** Default 200. HyperLogLog only: distinct values kept per lane. */
          maxValues: z.number().int().min(1).max(1000).default(200),
        })
        .superRefine((b, ctx) => {
          if (b.by === 'trait' && b.trait === undefined) ctx.addIssue({ code: 'custom', path: ['trait'], message: 'is required with by: trait (the trait key to split by)' });
          if (b.by === 'channel' && b.trait !== undefined) ctx.addIssue({ code: 'custom', path: ['trait'], message: 'only applies to by: trait' });
          if (b.values?.some((v) => v === 'other' || v === 'unknown')) {
            ctx.addIssue({ code: 'custom', path: ['values'], message: '"other" and "unknown" are reserved: they hold unlisted and missing values' });
          }
        }),
    )
    .max(4)
    .superRefine(uniqueNames)
    .default([]),
});

export const lifecycleSchema = z
  .strictObject({
    /** Default "7d". A user is `new` this long after first seen. */
    newFor: durationMs('7d'),
    /** Default "14d". No activity this long: `dormant` (on time, by timer). */
    dormantAfter: durationMs('14d'),
    /** Default "30d". No activity this long: `churned`. */
    churnedAfter: durationMs('30d'),
    /** Default "7d". After coming back from dormant or churned, `reactivated` this long. */
    reactivatedFor: durationMs('7d'),
    /** Default "1s". How often due timers are swept; a transition is recorded at most this late. */
    sweepInterval: durationMs('1s', 10),
  })
  .superRefine((l, ctx) => {
    if (l.churnedAfter <= l.dormantAfter) ctx.addIssue({ code: 'custom', path: ['churnedAfter'], message: 'must be longer than lifecycle.dormantAfter' });
  })
  .transform((l) => ({
    newForMs: l.newFor,
    dormantAfterMs: l.dormantAfter,
    churnedAfterMs: l.churnedAfter,
    reactivatedForMs: l.reactivatedFor,
    sweepIntervalMs: l.sweepInterval,
  }));

export const behaviourSchema = z.strictObject({
  /** "At least `keep` matching events within `within`": exact, the last `keep` times are kept. */
  counters: z
    .array(
      z
        .strictObject({ name, match: matchSchema, keep: z.number().int().min(1).max(100), within: durationMs(undefined) })
        .transform((c) => ({ name: c.name, match: c.match, keep: c.keep, withinMs: c.within })),
    )
    .max(32)
    .superRefine(uniqueNames)
    .default([]),
  /** Sum of `value` of matching events over `window`, kept in `bucket`-sized time buckets. */
  sums: z
    .array(
      z
        .strictObject({ name, match: matchSchema, window: durationMs(undefined), bucket: durationMs('1h', 60_000) })
        .superRefine((s, ctx) => {
          if (s.window / s.bucket > 400) ctx.addIssue({ code: 'custom', path: ['bucket'], message: 'is too small for the window: at most 400 buckets per window' });
        })
        .transform((s) => ({ name: s.name, match: s.match, windowMs: s.window, bucketMs: s.bucket })),
    )
    .max(16)
    .superRefine(uniqueNames)
    .default([]),
  /** Consecutive days (in the user's zone) with a matching event. */
  streaks: z.array(z.strictObject({ name, match: matchSchema })).max(16).superRefine(uniqueNames).default([]),
  /** Event props copied into the user's traits when an event carries them. */
  traits: z.array(z.string().min(1).max(64)).max(16).default([]),
  /**
   * Sign-ups per device, across users and partitions (referral anti-abuse): each user's first
   * matching event with a device_id is their sign-up; a journey condition `deviceSignups` counts
   * the sign-ups from the same device within `within` of the user's own. Default none.
   */
  deviceSignups: z
    .array(
      z
        .strictObject({
          name,
          match: matchSchema,
          within: durationMs(undefined, 60_000),
          /** Default "30d". How long a device's sign-ups are kept after its newest one. */
          keepFor: durationMs('30d', 60_000),
          /** Default 1000. Sign-ups kept per device (the newest); a farm beyond it still counts over any sane limit. */
          maxPerDevice: z.number().int().min(10).max(100_000).default(1000),
        })
        .superRefine((d, ctx) => {
          if (d.keepFor < 2 * d.within) ctx.addIssue({ code: 'custom', path: ['keepFor'], message: 'must be at least twice within: sign-ups on both sides of a user\'s own are counted' });
        })
        .transform((d) => ({ name: d.name, match: d.match, withinMs: d.within, keepForMs: d.keepFor, maxPerDevice: d.maxPerDevice })),
    )
    .max(4)
    .superRefine(uniqueNames)
    .default([]),
});
