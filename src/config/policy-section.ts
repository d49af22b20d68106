import { z } from 'zod';
import { channelName, duration, id, matchSchema, oneOrMore, propKey, share, timeOfDay, unique } from './rule-fields.js';

/**
 * The `policy:` section: the contact policy every journey's touches pass (DESIGN §4 "Policy
 * gate"): consent per channel, frequency caps, quiet hours, a minimum gap and the global
 * holdout. Times of day and calendar caps are read in the user's own time zone (the reporting
 * zone when the user's is unknown).
 */

const consentChoice = z.enum(['granted', 'denied']);

const consentEventSchema = z
  .strictObject({
    /** Required. The events that record a consent choice. */
    match: matchSchema,
    /** The channel the choice is about; or channelProp, the prop that names it. */
    channel: channelName.optional(),
    channelProp: propKey.optional(),
    /** The choice (false = opt-out); or grantProp, a prop holding "true" or "false". */
    grant: z.boolean().optional(),
    grantProp: propKey.optional(),
  })
  .superRefine((e, ctx) => {
    if ((e.channel === undefined) === (e.channelProp === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'needs exactly one of channel (a channel name) or channelProp (the prop naming the channel)' });
    }
    if ((e.grant === undefined) === (e.grantProp === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'needs exactly one of grant (true/false) or grantProp (the prop holding "true" or "false")' });
    }
  });

const consentSchema = z
  .strictObject({
    /** Default granted. The choice assumed for a channel the user has made none for. */
    default: consentChoice.default('granted'),
    /** Default {}. Per-channel defaults, e.g. `sms: denied` (opt-in channels). */
    channels: z.record(z.string(), consentChoice).default({}),
    /** Default none. Events that change a user's consent (opt-out, opt-in). */
    events: z.array(consentEventSchema).max(16).default([]),
  })
  .superRefine((c, ctx) => {
    for (const key of Object.keys(c.channels)) {
      if (!channelName.safeParse(key).success) {
        ctx.addIssue({ code: 'custom', path: ['channels', key], message: `expected a channel name like "push" as the key, got ${JSON.stringify(key)}`, params: { atKey: true } });
      }
    }
  });

const quietHoursSchema = z
  .strictObject({
    /** Required. Local time quiet hours start, e.g. "22:00". */
    from: timeOfDay,
    /** Required. Local time they end, e.g. "08:00" (earlier than from = over midnight). */
    to: timeOfDay,
    /** Default defer: send when quiet hours end. drop: do not send. Journeys may override. */
    action: z.enum(['defer', 'drop']).default('defer'),
    /** Default: every channel. The channels quiet hours apply to. */
    channels: oneOrMore(channelName, 16, 'a channel').optional(),
  })
  .superRefine((q, ctx) => {
    if (q.from === q.to) ctx.addIssue({ code: 'custom', path: ['to'], message: 'equals from; quiet hours need a start and a different end' });
  });

export const CAP_PERIODS = ['day', 'week', 'month'] as const;

const capSchema = z
  .strictObject({
    /** Required. Names the cap in reasons (`cap_channel: push_daily`). */
    name: id('a cap name'),
    /** Default: every channel together (a cross-channel cap). */
    channel: oneOrMore(channelName, 16, 'a channel').optional(),
    /** Required. Most touches allowed in the window, 1-50 (a user's touch history keeps 64). */
    max: z.number().int().min(1).max(50),
    /** A rolling window (e.g. 24h); or per, a calendar period in the user's zone. */
    within: duration(60_000).optional(),
    per: z.enum(CAP_PERIODS).optional(),
  })
  .superRefine((c, ctx) => {
    if ((c.within === undefined) === (c.per === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'needs exactly one of within (a rolling window like 24h) or per (day, week or month, calendar in the user\'s zone)' });
    }
    if (c.within !== undefined && c.within > 31 * 86_400_000) ctx.addIssue({ code: 'custom', path: ['within'], message: 'is longer than 31d; use per: month' });
  });

export const policySchema = z.strictObject({
  consent: z.preprocess((v) => (v === null ? undefined : v), consentSchema.prefault({})),
  /** Default none. */
  quietHours: quietHoursSchema.optional(),
  /** Default none. Every cap that applies must allow the touch (the most restrictive wins). */
  caps: unique(z.array(capSchema).max(10), 'name').default([]),
  /** Default none. Least time between two touches to a user (on capped journeys). */
  minGap: duration(1000).optional(),
  /** Default 0%. Users kept out of every journey that uses the global holdout. At most 50%. */
  globalHoldout: share(0.5).prefault(0),
  /** Default "nudge". Changing it reshuffles who is in the global holdout. */
  holdoutSalt: z.string().min(1).max(64).default('nudge'),
});

export type PolicyConfig = z.output<typeof policySchema>;
