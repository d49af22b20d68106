import { z } from 'zod';
import {
  channelName,
  duration,
  id,
  matchSchema,
  oneOrMore,
  pattern,
  propKey,
  share,
  shortId,
  stageName,
  templateName,
  timeOfDay,
  unique,
} from './rule-fields.js';

/**
 * The `journeys:` section: the journey language (DESIGN §4), validated field by field so a
 * mistake is reported as `journeys[2].trigger.within: expected a duration like "30m", got ...`.
 * The output is normalised plain data (durations in ms, times of day in minutes, filters as
 * lists); `compileRules` (rules/) resolves the references to behaviour counters and streaks.
 *
 * Variant objects (trigger, condition, step timing) are one strict mapping with every field
 * optional plus a rule saying which fields each kind needs: an unknown key then gets a "did you
 * mean", and a field of the wrong kind is named, which a zod union would blur into "invalid".
 */

export const TRIGGER_TYPES = ['event', 'count', 'inactive', 'notFollowedBy', 'streak', 'stage', 'firstTime'] as const;
export type TriggerType = (typeof TRIGGER_TYPES)[number];

/** Fields each trigger type requires and allows. */
const TRIGGER_FIELDS: Record<TriggerType, { required: string[]; optional: string[] }> = {
  event: { required: ['match'], optional: [] },
  count: { required: ['counter', 'atLeast'], optional: ['within'] },
  inactive: { required: ['for'], optional: ['match'] },
  notFollowedBy: { required: ['first', 'then', 'within'], optional: ['by'] },
  streak: { required: ['streak', 'reaches'], optional: [] },
  stage: { required: [], optional: ['from', 'to'] },
  firstTime: { required: ['match'], optional: [] },
};

const behaviourName = pattern(/^[a-z][a-z0-9_]{0,31}$/, 'the name of a behaviour counter, sum or streak');

const triggerType = z.unknown().transform((v, ctx): TriggerType => {
  const found = TRIGGER_TYPES.find((t) => t === v);
  if (found) return found;
  ctx.addIssue({ code: 'custom', message: `expected one of ${TRIGGER_TYPES.join(', ')}, got ${typeof v === 'string' ? JSON.stringify(v) : String(v)}` });
  return z.NEVER;
});

const article = (word: string) => (/^[aeiou]/.test(word) ? 'an' : 'a');

const triggerSchema = z
  .strictObject({
    /** Required: event | count | inactive | notFollowedBy | streak | stage | firstTime. */
    type: triggerType,
    match: matchSchema.optional(),
    counter: behaviourName.optional(),
    atLeast: z.number().int().min(1).max(100).optional(),
    within: duration().optional(),
    for: duration(60_000).optional(),
    first: matchSchema.optional(),
    then: matchSchema.optional(),
    by: propKey.optional(),
    streak: behaviourName.optional(),
    reaches: z.number().int().min(1).max(3650).optional(),
    from: oneOrMore(stageName, 5, 'a stage').optional(),
    to: oneOrMore(stageName, 5, 'a stage').optional(),
  })
  .superRefine((t, ctx) => {
    const fields = TRIGGER_FIELDS[t.type];
    const allowed = new Set(['type', ...fields.required, ...fields.optional]);
    for (const f of fields.required) {
      if ((t as Record<string, unknown>)[f] === undefined) ctx.addIssue({ code: 'custom', path: [f], message: `required for ${article(t.type)} ${t.type} trigger` });
    }
    for (const [f, v] of Object.entries(t)) {
      if (v !== undefined && !allowed.has(f)) {
        ctx.addIssue({ code: 'custom', path: [f], message: `does not apply to ${article(t.type)} ${t.type} trigger (it takes ${[...allowed].filter((a) => a !== 'type').join(', ') || 'no other field'})`, params: { atKey: true } });
      }
    }
    if (t.type === 'stage' && t.from === undefined && t.to === undefined) {
      ctx.addIssue({ code: 'custom', message: 'a stage trigger needs from, to or both (e.g. to: dormant)' });
    }
  });

const conditionSchema = z
  .strictObject({
    stage: oneOrMore(stageName, 5, 'a stage').optional(),
    trait: propKey.optional(),
    in: z.array(z.union([z.string().max(64), z.number()]).transform(String)).min(1).max(64).optional(),
    exists: z.boolean().optional(),
    counter: behaviourName.optional(),
    sum: behaviourName.optional(),
    streak: behaviourName.optional(),
    /** A behaviour.deviceSignups name: sign-ups from the user's sign-up device around their own. */
    deviceSignups: behaviourName.optional(),
    atLeast: z.number().optional(),
    atMost: z.number().optional(),
    within: duration().optional(),
    /** Default false. True inverts the condition. */
    not: z.boolean().default(false),
  })
  .superRefine((c, ctx) => {
    const kinds = (['stage', 'trait', 'counter', 'sum', 'streak', 'deviceSignups'] as const).filter((k) => c[k] !== undefined);
    if (kinds.length !== 1) {
      const got = kinds.length === 0 ? 'none' : kinds.join(' and ');
      ctx.addIssue({ code: 'custom', message: `expected exactly one of stage, trait, counter, sum, streak, deviceSignups, got ${got}` });
      return;
    }
    const kind = kinds[0]!;
    const need = (f: 'in' | 'exists' | 'atLeast' | 'atMost' | 'within', ok: boolean, why: string) => {
      if (c[f] !== undefined && !ok) ctx.addIssue({ code: 'custom', path: [f], message: `does not apply to a ${kind} condition (${why})`, params: { atKey: true } });
    };
    need('in', kind === 'trait', 'only a trait condition takes in');
    need('exists', kind === 'trait', 'only a trait condition takes exists');
    const bounded = kind === 'counter' || kind === 'sum' || kind === 'streak' || kind === 'deviceSignups';
    need('atLeast', bounded, 'counter, sum, streak and deviceSignups conditions take atLeast/atMost');
    need('atMost', bounded, 'counter, sum, streak and deviceSignups conditions take atLeast/atMost');
    need('within', kind === 'counter', 'only a counter condition takes within');
    if (kind === 'trait' && (c.in === undefined) === (c.exists === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'a trait condition needs exactly one of in: [values] or exists: true/false' });
    }
    if (bounded && c.atLeast === undefined && c.atMost === undefined) {
      ctx.addIssue({ code: 'custom', message: `a ${kind} condition needs atLeast, atMost or both` });
    }
  });

const USUAL_HOUR = 'usualActiveHour';
const stepAt = z.unknown().transform((v, ctx): number | 'usual' => {
  if (v === USUAL_HOUR) return 'usual';
  const parsed = timeOfDay.safeParse(v);
  if (parsed.success) return parsed.data;
  ctx.addIssue({ code: 'custom', message: `expected a time of day like "10:00" or ${USUAL_HOUR}, got ${typeof v === 'string' ? JSON.stringify(v) : String(v)}` });
  return z.NEVER;
});

const stepSchema = z
  .strictObject({
    /** Required. Unique in the journey; part of the touch id. */
    id: id('a step id'),
    /** Default 0. Wait this long after the trigger (or the previous step). */
    delay: duration(0).prefault(0),
    /** Default none. Then send at the next such local time, or at the user's usual active hour. */
    at: stepAt.optional(),
    /** With at: usualActiveHour, the local time used while the user's usual hour is unknown. */
    fallbackAt: timeOfDay.optional(),
    /** Default: the journey's. */
    channel: oneOrMore(channelName, 4, 'a channel').optional(),
    template: templateName.optional(),
  })
  .superRefine((s, ctx) => {
    if (s.fallbackAt !== undefined && s.at !== 'usual') ctx.addIssue({ code: 'custom', path: ['fallbackAt'], message: `only applies with at: ${USUAL_HOUR}` });
  });

const reEntrySchema = z.unknown().transform((v, ctx): { kind: 'never' } | { kind: 'cooldown'; ms: number } => {
  if (v === 'never') return { kind: 'never' };
  if (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 1 && 'cooldown' in v) {
    const ms = duration(1).safeParse((v as { cooldown: unknown }).cooldown);
    if (ms.success) return { kind: 'cooldown', ms: ms.data };
  }
  ctx.addIssue({ code: 'custom', message: `expected never or { cooldown: 30d }, got ${typeof v === 'string' ? JSON.stringify(v) : Array.isArray(v) ? 'a list' : typeof v === 'object' && v !== null ? 'another mapping' : String(v)}` });
  return z.NEVER;
});

const variantSchema = z.strictObject({
  id: shortId('a variant id'),
  /** Default 1. Relative weight among the journey's variants. */
  weight: z.number().gt(0).max(1000).default(1),
  /** Default: the journey's. Replaces the journey template in steps without their own. */
  template: templateName.optional(),
});

const budgetSchema = z
  .strictObject({
    total: z.number().gt(0).optional(),
    perDay: z.number().gt(0).optional(),
    /** Default 1. What one touch costs against the budget. */
    costPerTouch: z.number().gt(0).default(1),
  })
  .superRefine((b, ctx) => {
    if (b.total === undefined && b.perDay === undefined) ctx.addIssue({ code: 'custom', message: 'a budget needs total, perDay or both' });
    if (b.total !== undefined && b.perDay !== undefined && b.perDay > b.total) ctx.addIssue({ code: 'custom', path: ['perDay'], message: `is more than total (${b.total})` });
  });

export const journeySchema = z
  .strictObject({
    /** Required. Unique; part of touch ids, metric labels and Redis keys. */
    id: id('a journey id'),
    description: z.string().max(200).optional(),
    /** Default 0. When caps allow fewer touches than were decided together, higher goes first. */
    priority: z.number().int().min(-1000).max(1000).default(0),
    trigger: triggerSchema,
    /** Default none. All must hold on the user's state after the triggering event. */
    conditions: z.array(conditionSchema).max(16).default([]),
    /** Default none. A matching event ends the journey for the user (pending steps are cancelled). */
    exitOn: z.array(matchSchema).max(8).default([]),
    /** Default never. Whether and when a user who entered may enter again. */
    reEntry: reEntrySchema.prefault('never'),
    /** Required. The channel, or channels in order of preference (the first the policy allows). */
    channel: oneOrMore(channelName, 4, 'a channel like push'),
    /** Required. The template the touch names. */
    template: templateName,
    /** Default none. The traits a touch may carry (the only user data in a payload). */
    attributes: unique(z.array(propKey).max(16), 'attribute').default([]),
    /** Default one step `main` with no delay. */
    steps: unique(z.array(stepSchema).min(1).max(8), 'id').default(() => [{ id: 'main', delay: 0 }]),
    /** Default none. A/B variants by weight, assigned by a hash of (user, journey). */
    variants: unique(z.array(variantSchema).max(8), 'id').default([]),
    /** Default 0%. Users held out of the journey (no touch; counted for lift). At most 90%. */
    holdout: share(0.9).prefault(0),
    /** Default true. false = users in the global holdout still get this journey (service messages). */
    useGlobalHoldout: z.boolean().default(true),
    conversion: z.strictObject({ match: matchSchema, within: duration(60_000) }).optional(),
    budget: budgetSchema.optional(),
    /** Default: policy.quietHours.action. */
    quietHours: z.enum(['defer', 'drop']).optional(),
    /** Default false. true = caps and minGap neither limit nor count this journey's touches. */
    ignoreCaps: z.boolean().default(false),
  });

export const journeysSchema = unique(z.array(journeySchema).max(64), 'id');

export type JourneyConfig = z.output<typeof journeySchema>;
