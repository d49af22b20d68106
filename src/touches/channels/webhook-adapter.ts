import { isIP } from 'node:net';
import { ErrorCodes } from '../../errors.js';
import type { ChannelAdapter, SendResult } from '../channel-adapter.js';
import type { TouchJob } from '../touch-job.js';
import { guardedLookup, isPrivateAddress, type LookupFn } from './address-guard.js';
import type { DisabledEndpoints } from './disabled-endpoints.js';
import { postAgents, postOnce, type PostAgents } from './http-post.js';
import { parseRetryAfter } from './retry-after.js';
import { webhookHeaders, webhookSecretKey } from './standard-webhooks.js';

export interface WebhookAdapterOptions {
  /** @default 'webhook' */
  channel?: string;
  /** The endpoint's name in reasons, logs and the disabled list; never the URL, which may carry a token. @default channel */
  endpoint?: string;
  /** http(s) URL the touches are POSTed to. */
  url: string;
  /** `whsec_<base64>`; several during a rotation (each signs; receivers accept any). */
  secret: string | readonly string[];
  /** Whole request, connect to last response byte (the spec recommends 15–30 s). @default 15_000 */
  timeoutMs?: number;
  /**
   * Allow targets on loopback, private and link-local addresses. Off in production: a webhook
   * URL must not reach internal services or cloud metadata (SSRF). Tests turn it on. @default false
   */
  allowPrivateAddresses?: boolean;
  disabled: DisabledEndpoints;
  /** The payload's `type`. @default 'nudge.touch' */
  eventType?: string;
  /** @default 1 h */
  maxRetryAfterMs?: number;
  /** DNS resolution (tests pass a fake). @default dns.lookup */
  resolve?: LookupFn;
  clock?: () => number;
}

/**
 * Webhook channel: POSTs the touch as JSON with Standard Webhooks headers; `webhook-id` = the
 * touch id, the same on every retry, so the receiver deduplicates (hence `idempotent`).
 * 2xx ok; 3xx rejected (not followed); 408/429/5xx/timeouts/network retried (Retry-After
 * honoured); 410 disables the endpoint; other 4xx rejected.
 */
export class WebhookAdapter implements ChannelAdapter {
  readonly channel: string;
  readonly idempotent = true;
  readonly maxSendMs: number;
  private readonly endpoint: string;
  private readonly url: URL;
  private readonly keys: Buffer[];
  private readonly lookup: LookupFn | undefined;
  private readonly agents: PostAgents = postAgents();
  private readonly clock: () => number;

  constructor(private readonly o: WebhookAdapterOptions) {
    this.channel = o.channel ?? 'webhook';
    this.endpoint = o.endpoint ?? this.channel;
    this.maxSendMs = o.timeoutMs ?? 15_000;
    this.clock = o.clock ?? Date.now;
    let url: URL;
    try {
      url = new URL(o.url);
    } catch {
      throw new RangeError(`webhook endpoint ${this.endpoint}: url is not a valid URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RangeError(`webhook endpoint ${this.endpoint}: url must be http or https, got ${url.protocol}`);
    this.url = url;
    this.keys = (typeof o.secret === 'string' ? [o.secret] : [...o.secret]).map(webhookSecretKey);
    if (this.keys.length === 0) throw new RangeError(`webhook endpoint ${this.endpoint}: needs at least one secret`);
    const resolve = o.resolve;
    this.lookup = o.allowPrivateAddresses === true ? resolve : guardedLookup(resolve);
  }

  async send(job: TouchJob, signal: AbortSignal): Promise<SendResult> {
    let off;
    try {
      off = await this.o.disabled.get(this.endpoint);
    } catch {
      // Nothing was sent yet: a plain retry, not an "outcome unknown" throw.
      return { kind: 'retry', reason: `could not read whether endpoint ${this.endpoint} is disabled (Redis unavailable)` };
    }
    if (off !== null) return { kind: 'disable', reason: `endpoint ${this.endpoint} is disabled since ${new Date(off.at).toISOString()} (${off.reason}); re-enable it once fixed` };
    const host = this.url.hostname.replace(/^\[|\]$/g, '');
    if (this.o.allowPrivateAddresses !== true && isIP(host) !== 0 && isPrivateAddress(host)) return blocked(this.endpoint, host);

    const body = Buffer.from(JSON.stringify(payload(job, this.o.eventType ?? 'nudge.touch')));
    const headers = { 'content-type': 'application/json', 'user-agent': 'nudge-webhooks/1', ...webhookHeaders(this.keys, job.touchId, Math.floor(this.clock() / 1000), body) };
    const timeout = AbortSignal.timeout(this.maxSendMs);
    try {
      const res = await postOnce(this.url, body, { headers, signal: AbortSignal.any([signal, timeout]), lookup: this.lookup, agents: this.agents });
      return this.classify(res.status, res.headers['retry-after']);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === ErrorCodes.TOUCH_TARGET_BLOCKED) return blocked(this.endpoint, (err as { address?: string }).address ?? '?');
      if (timeout.aborted) return { kind: 'retry', reason: `endpoint ${this.endpoint} did not answer within ${this.maxSendMs} ms` };
      if (signal.aborted) return { kind: 'retry', reason: `send to endpoint ${this.endpoint} aborted (worker closing)` };
      return { kind: 'retry', reason: `endpoint ${this.endpoint} unreachable (${e.code ?? e.name})` };
    }
  }

  private async classify(status: number, retryAfter: string | undefined): Promise<SendResult> {
    const name = this.endpoint;
    if (status >= 200 && status < 300) return { kind: 'ok' };
    if (status === 410) {
      const reason = 'answered 410 Gone';
      await this.o.disabled.disable(name, reason, this.clock());
      return { kind: 'disable', reason: `endpoint ${name} ${reason}; disabled, later touches fail without a request` };
    }
    const wait = parseRetryAfter(retryAfter, this.clock(), this.o.maxRetryAfterMs ?? 3_600_000);
    if (status === 408 || status === 429 || status >= 500) {
      return { kind: 'retry', reason: `endpoint ${name} answered ${status}`, ...(wait === undefined ? {} : { retryAfterMs: wait }) };
    }
    if (status >= 300 && status < 400) return { kind: 'permanent', reason: `endpoint ${name} answered ${status} (a redirect, not followed); configure the final URL` };
    return { kind: 'permanent', reason: `endpoint ${name} answered ${status}` };
  }
}

function blocked(endpoint: string, address: string): SendResult {
  return {
    kind: 'permanent',
    code: ErrorCodes.TOUCH_TARGET_BLOCKED,
    reason: `endpoint ${endpoint} resolves to a private, loopback or link-local address (${address}); refused (allowPrivateAddresses is off)`,
  };
}

/** The body: template name and the attributes the job lists, with ids; nothing else of the user. */
function payload(job: TouchJob, type: string): unknown {
  return {
    type,
    timestamp: new Date(job.triggeredAt).toISOString(),
    data: {
      touchId: job.touchId,
      userId: job.userId,
      journeyId: job.journeyId,
      stepId: job.stepId,
      channel: job.channel,
      template: job.template,
      variant: job.variant,
      sendAt: job.sendAt,
      attributes: job.attributes,
    },
  };
}
