import { z } from 'zod';
import { duration, pattern, shown } from './rule-fields.js';

/**
 * The `touches:` section: how decided touches are delivered (DESIGN §2.2, §5). The queue, how
 * long completed jobs are kept (so re-adding a touch id is a no-op), retries, and per channel
 * the adapter and its limits. A channel a journey uses but this section does not list is
 * delivered by `defaultAdapter` (the log adapter unless set), and check-config says so.
 */

export const ADAPTERS = ['log', 'webhook'] as const;

const rateLimitSchema = z.strictObject({
  /** Required. Most sends per `per` on this channel, across all workers. */
  max: z.number().int().min(1).max(1_000_000),
  /** Default 1s. */
  per: duration(1).prefault('1s'),
});

// Standard Webhooks secrets are "whsec_" + base64 of 24-64 random bytes.
const webhookSecret = z.string().regex(/^whsec_[A-Za-z0-9+/]{32,}={0,2}$/, 'expected a Standard Webhooks secret: "whsec_" followed by base64 of at least 24 bytes');

/** An http(s) URL; a refused one is shown without any user:password@ part. */
const webhookUrl = z.unknown().transform((v, ctx): string => {
  if (typeof v === 'string' && v.length <= 2048) {
    try {
      const u = new URL(v);
      if ((u.protocol === 'https:' || u.protocol === 'http:') && u.hostname !== '') return v;
    } catch {
      // fall through to the message
    }
  }
  const masked = typeof v === 'string' ? JSON.stringify(v.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/?#]*@/i, '$1***@').slice(0, 80)) : shown(v);
  ctx.addIssue({ code: 'custom', message: `expected an http:// or https:// URL like "https://crm.example.com/hooks/nudge", got ${masked}` });
  return z.NEVER;
});

const channelSchema = z
  .strictObject({
    /** Required. log (writes what would be sent) or webhook. */
    adapter: z.enum(ADAPTERS),
    /** Default 4. Jobs of this channel one worker process runs at once. */
    concurrency: z.number().int().min(1).max(256).default(4),
    /** Default none. */
    rateLimit: rateLimitSchema.optional(),
    /** webhook: the https:// (or http:// on loopback) URL to POST to. */
    url: webhookUrl.optional(),
    /** webhook: the signing secret, or a list during a rotation (each signs). Secret: never echoed. */
    secret: z.union([webhookSecret, z.array(webhookSecret).min(1).max(4)]).optional(),
    /** webhook: default 15s, the whole request. */
    timeout: duration(100).optional(),
    /** webhook: default false. true allows private, loopback and link-local targets. */
    allowPrivateAddresses: z.boolean().optional(),
  })
  .superRefine((c, ctx) => {
    const webhookOnly = ['url', 'secret', 'timeout', 'allowPrivateAddresses'] as const;
    if (c.adapter === 'webhook') {
      if (c.url === undefined) ctx.addIssue({ code: 'custom', path: ['url'], message: 'required for the webhook adapter' });
      if (c.secret === undefined) ctx.addIssue({ code: 'custom', path: ['secret'], message: 'required for the webhook adapter (receivers verify the signature with it)' });
    } else {
      for (const f of webhookOnly) {
        if (c[f] !== undefined) ctx.addIssue({ code: 'custom', path: [f], message: `only applies to the webhook adapter`, params: { atKey: true } });
      }
    }
  })
  .transform((c) => ({
    adapter: c.adapter,
    concurrency: c.concurrency,
    rateLimit: c.rateLimit ? { max: c.rateLimit.max, perMs: c.rateLimit.per } : undefined,
    ...(c.adapter === 'webhook'
      ? {
          webhook: {
            url: c.url as string,
            /** One secret, or several during a rotation (WebhookAdapterOptions.secret takes both). */
            secret: c.secret as string | string[],
            timeoutMs: c.timeout ?? 15_000,
            allowPrivateAddresses: c.allowPrivateAddresses ?? false,
          },
        }
      : {}),
  }));

export const touchesSchema = z
  .strictObject({
    /** Default "nudge-touches". The BullMQ queue (DESIGN §2.2). */
    queue: pattern(/^[A-Za-z0-9_-]{1,64}$/, 'a queue name (letters, digits, "_", "-"; at most 64)').prefault('nudge-touches'),
    /** Default 7d. Completed jobs are kept this long, so re-adding the same touch id is a no-op. */
    keepCompletedFor: duration(60_000).prefault('7d'),
    /** Default 8. Delivery attempts per touch, with exponential backoff and jitter. */
    attempts: z.number().int().min(1).max(50).default(8),
    /** Default 5s. The first retry delay; it doubles per attempt, with jitter. */
    backoff: duration(10).prefault('5s'),
    /** Default log. The adapter of channels not listed under channels. */
    defaultAdapter: z.enum(['log']).default('log'),
    /** Default {}. Per channel (push, sms, rm_task...): adapter and limits. */
    channels: z.record(z.string(), channelSchema).default({}),
  })
  .superRefine((t, ctx) => {
    for (const key of Object.keys(t.channels)) {
      if (!/^[a-z][a-z0-9_-]{0,31}$/.test(key)) {
        ctx.addIssue({ code: 'custom', path: ['channels', key], message: `expected a channel name like "push" as the key, got ${JSON.stringify(key)}`, params: { atKey: true } });
      }
    }
  })
  .transform((t) => ({
    queue: t.queue,
    keepCompletedMs: t.keepCompletedFor,
    attempts: t.attempts,
    backoffMs: t.backoff,
    defaultAdapter: t.defaultAdapter,
    channels: t.channels,
  }));

export type TouchesConfig = z.output<typeof touchesSchema>;
