import { z } from 'zod';
import { parseDuration } from './duration.js';

/**
 * Field builders shared by the journeys, policy and touches sections: names, durations, shares,
 * times of day and the event filter language. Kept apart from schema.ts, which imports the
 * sections (a section importing schema.ts would be a cycle); the wording follows schema.ts:
 * "expected <what>, got <value>".
 */

/** How a refused value is shown after "got" (no secrets pass through these fields). */
export function shown(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return `a list of ${value.length} entries`;
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return String(value);
}

/** A string matching `re`, refused as "expected <expectation>, got <value>". */
export function pattern(re: RegExp, expectation: string) {
  return z.unknown().transform((v, ctx): string => {
    if (typeof v === 'string' && re.test(v)) return v;
    ctx.addIssue({ code: 'custom', message: `expected ${expectation}, got ${shown(v)}` });
    return z.NEVER;
  });
}

export const EVENT_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
/** Journey, step, cap and channel names: they end up in touch ids, Redis keys and metric labels. */
export const ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const SHORT_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;

export const eventName = pattern(EVENT_NAME, 'an event name (letters, digits, "_", ".", ":", "-"; at most 64)');
export const id = (what: string) => pattern(ID, `${what} of lower-case letters, digits, "_" and "-" (at most 64, starting with a letter or digit)`);
export const shortId = (what: string) => pattern(SHORT_ID, `${what} of letters, digits, "_" and "-" (at most 32)`);
export const channelName = pattern(/^[a-z][a-z0-9_-]{0,31}$/, 'a channel name like "push" (lower-case letters, digits, "_", "-"; at most 32)');
export const propKey = pattern(/^[^\s]{1,64}$/, 'a property name (1-64 characters, no spaces)');
export const templateName = pattern(/^[A-Za-z0-9_.:/-]{1,128}$/, 'a template name (letters, digits, "_", ".", ":", "/", "-"; at most 128)');

/**
 * One value or a list of them, read as a list (`channel: push` or `channel: [push, sms]`). A
 * refused single value is reported at the field itself, not at a `[0]` the file does not have.
 */
export function oneOrMore<T>(item: z.ZodType<T>, max: number, what: string) {
  return z.unknown().transform((v, ctx): T[] => {
    if (v === undefined) {
      ctx.addIssue({ code: 'custom', message: `required (expected ${what} or a list of them)` });
      return z.NEVER;
    }
    if (v === null || (Array.isArray(v) && v.length === 0)) {
      ctx.addIssue({ code: 'custom', message: `expected ${what} or a list of them, got ${Array.isArray(v) ? 'an empty list' : shown(v)}` });
      return z.NEVER;
    }
    if (Array.isArray(v) && v.length > max) {
      ctx.addIssue({ code: 'custom', message: `expected at most ${max} entries, got a list of ${v.length} entries` });
      return z.NEVER;
    }
    const list: unknown[] = Array.isArray(v) ? v : [v];
    const out: T[] = [];
    list.forEach((x, i) => {
      const r = item.safeParse(x);
      if (r.success) out.push(r.data);
      else for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: Array.isArray(v) ? [i, ...issue.path] : issue.path });
    });
    return out;
  });
}

/** A duration in milliseconds, at least `min`. */
export function duration(min = 1) {
  return z.unknown().transform((v, ctx): number => {
    const ms = typeof v === 'string' || typeof v === 'number' ? parseDuration(v) : null;
    if (ms === null || ms < min) {
      const floor = min > 1 ? ` of at least ${min}ms` : '';
      ctx.addIssue({ code: 'custom', message: `expected a duration like "30m"${floor}, got ${shown(v)}` });
      return z.NEVER;
    }
    return ms;
  });
}

/** A share of users: `10%` or a fraction `0.1`, at most `max`. Output: a fraction. */
export function share(max: number) {
  return z.unknown().transform((v, ctx): number => {
    let f: number | undefined;
    if (typeof v === 'number') f = v;
    else if (typeof v === 'string' && /^\d+(\.\d+)?%$/.test(v.trim())) f = Number(v.trim().slice(0, -1)) / 100;
    if (f === undefined || !Number.isFinite(f) || f < 0 || f > max) {
      ctx.addIssue({ code: 'custom', message: `expected a share from 0% to ${max * 100}% (like "10%" or 0.1), got ${shown(v)}` });
      return z.NEVER;
    }
    return f;
  });
}

/** `"22:00"` -> minutes after local midnight (1320). */
export const timeOfDay = z.unknown().transform((v, ctx): number => {
  const m = typeof v === 'string' ? /^([01]\d|2[0-3]):([0-5]\d)$/.exec(v.trim()) : null;
  if (m) return Number(m[1]) * 60 + Number(m[2]);
  const hint = typeof v === 'number' ? ' (put it in quotes)' : '';
  ctx.addIssue({ code: 'custom', message: `expected a time of day like "22:00" (24-hour, local to the user), got ${shown(v)}${hint}` });
  return z.NEVER;
});

// ---------------------------------------------------------------------------------------------
// The event filter of journeys: names, channels, props (equality, set membership, numeric
// comparison) and the numeric `value`.

export interface NumberRange {
  gt?: number;
  gte?: number;
  lt?: number;
  lte?: number;
}

export type PropTest =
  | { kind: 'equals'; value: string }
  | { kind: 'in'; values: string[] }
  | { kind: 'range'; range: NumberRange }
  | { kind: 'exists'; present: boolean };

export interface MatchOut {
  /** Event names that match; empty = any. */
  names: string[];
  /** Channels that match; empty = any. */
  channels: string[];
  props: Array<{ key: string; test: PropTest }>;
  value: NumberRange | null;
}

const scalarText = z.union([z.string().max(512), z.number(), z.boolean()], {
  error: (iss) => `expected a text, a number or true/false, got ${shown(iss.input)}`,
}).transform((v) => String(v));

const rangeSchema = z
  .strictObject({ gt: z.number().optional(), gte: z.number().optional(), lt: z.number().optional(), lte: z.number().optional() })
  .superRefine((r, ctx) => {
    if (Object.keys(r).length === 0) ctx.addIssue({ code: 'custom', message: 'expected at least one of gt, gte, lt, lte' });
    if (r.gt !== undefined && r.gte !== undefined) ctx.addIssue({ code: 'custom', path: ['gte'], message: 'use gt or gte, not both' });
    if (r.lt !== undefined && r.lte !== undefined) ctx.addIssue({ code: 'custom', path: ['lte'], message: 'use lt or lte, not both' });
  });

const propTestSchema = z.union(
  [
    scalarText.transform((value): PropTest => ({ kind: 'equals', value })),
    z.strictObject({ in: z.array(scalarText).min(1).max(64) }).transform((o): PropTest => ({ kind: 'in', values: o.in })),
    z.strictObject({ exists: z.boolean() }).transform((o): PropTest => ({ kind: 'exists', present: o.exists })),
    rangeSchema.transform((range): PropTest => ({ kind: 'range', range })),
  ],
  {
    error: (iss) =>
      `expected a value to equal, { in: [...] }, { exists: true } or a comparison like { gte: 100 }, got ${shown(iss.input)}`,
  },
);

/** `{ name?, channel?, props?, value? }`; an absent field matches anything. */
export const matchSchema = z
  .strictObject({
    name: oneOrMore(eventName, 32, 'an event name').optional(),
    channel: oneOrMore(pattern(/^[A-Za-z0-9_.:-]{1,32}$/, 'an event channel like "app"'), 16, 'an event channel').optional(),
    props: z.record(z.string().min(1).max(64), propTestSchema).optional(),
    value: rangeSchema.optional(),
  })
  .superRefine((m, ctx) => {
    if (m.props && Object.keys(m.props).length > 16) ctx.addIssue({ code: 'custom', path: ['props'], message: 'expected at most 16 properties' });
  })
  .transform(
    (m): MatchOut => ({
      names: m.name ?? [],
      channels: m.channel ?? [],
      props: Object.entries(m.props ?? {}).map(([key, test]) => ({ key, test })),
      value: m.value ?? null,
    }),
  );

/** Lifecycle stages a journey can name; the same list as `STAGES` in state/lifecycle.ts (a test keeps them equal). */
export const STAGE_NAMES = ['new', 'active', 'dormant', 'churned', 'reactivated'] as const;
export const stageName = z.unknown().transform((v, ctx): string => {
  const found = STAGE_NAMES.find((s) => s === v);
  if (found) return found;
  ctx.addIssue({ code: 'custom', message: `expected a lifecycle stage (${STAGE_NAMES.join(', ')}), got ${shown(v)}` });
  return z.NEVER;
});

/** Names must be unique in a list; the repeat is pointed at. */
/**
 * Names must be unique in a list; the repeat is pointed at. Runs even when an entry has other
 * problems (`when`), so one round trip reports both; entries whose key is unreadable are skipped.
 */
export function unique<T extends z.ZodType>(list: T, field: string) {
  return list.superRefine(
    (items, ctx) => {
      const seen = new Set<string>();
      (items as unknown[]).forEach((item, i) => {
        const k = typeof item === 'string' ? item : typeof item === 'object' && item !== null ? (item as Record<string, unknown>)[field] : undefined;
        if (typeof k !== 'string') return;
        if (seen.has(k)) ctx.addIssue({ code: 'custom', path: typeof item === 'string' ? [i] : [i, field], message: `${JSON.stringify(k)} is used twice; ${field}s must be unique` });
        seen.add(k);
      });
    },
    { when: (payload) => Array.isArray(payload.value) },
  );
}
