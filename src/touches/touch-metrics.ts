import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Every outcome a delivery attempt can have; the `result` label takes only these values. */
export const DELIVERY_RESULTS = [
  'sent', // the provider accepted it
  'duplicate', // the ledger says it was sent already: no second call
  'suppressed', // the send-time policy re-check said no
  'ambiguous', // an earlier attempt died mid-send on a channel that cannot resend safely: not resent
  'retry', // the provider failed in a way that may pass: retried with backoff
  'rejected', // the provider refused it for good, or the target is blocked
  'disabled', // the endpoint is disabled (410 Gone)
  'busy', // another attempt holds the send lease
  'invalid', // the job does not match the contract or names no configured channel
] as const;
export type DeliveryResult = (typeof DELIVERY_RESULTS)[number];

export const JOB_STATES = ['waiting', 'delayed', 'active', 'failed', 'completed'] as const;

/**
 * Metrics of the touches layer, on a registry passed in. Get-or-create: the relay (engine) and
 * the workers may share one process and one registry (`nudge run`). Labels come from fixed sets:
 * `channel` from the configured channels (anything else counts as `other`), `result` and
 * `state` from the lists above — never a user, touch or journey id.
 */
export class TouchMetrics {
  readonly deliveries: Counter<'channel' | 'result'>;
  readonly eventToDelivery: Histogram<'channel'>;
  readonly jobs: Gauge<'state'>;
  readonly outboxDepth: Gauge;
  readonly relayed: Counter;
  readonly outboxRejected: Counter;
  readonly relayErrors: Counter;
  readonly triggerToEnqueue: Histogram;
  readonly stalled: Counter;
  private readonly channels: Set<string>;

  constructor(registry: Registry, channels: readonly string[]) {
    this.channels = new Set(channels);
    const registers = [registry];
    const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
    this.deliveries = get('nudge_touch_deliveries_total', () => new Counter({
      name: 'nudge_touch_deliveries_total',
      help: `Touch delivery attempts by channel and result (${DELIVERY_RESULTS.join(', ')}).`,
      labelNames: ['channel', 'result'],
      registers,
    }));
    // Every configured channel x result starts at 0, so "no errors" reads 0 rather than "no
    // data" on the dashboards and ratio alerts have a denominator (bounded: channels x 9).
    for (const channel of this.channels) for (const result of DELIVERY_RESULTS) this.deliveries.inc({ channel, result }, 0);
    this.eventToDelivery = get('nudge_touch_event_to_delivery_seconds', () => new Histogram({
      name: 'nudge_touch_event_to_delivery_seconds',
      help: 'From a touch being due (the later of triggeredAt and sendAt) to its provider accepting it.',
      labelNames: ['channel'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
      registers,
    }));
    this.jobs = get('nudge_touch_jobs', () => new Gauge({
      name: 'nudge_touch_jobs',
      help: 'Touch jobs in the BullMQ queue by state, sampled periodically.',
      labelNames: ['state'],
      registers,
    }));
    this.outboxDepth = get('nudge_touch_outbox_depth', () => new Gauge({
      name: 'nudge_touch_outbox_depth',
      help: 'Touches committed to the outboxes of this instance’s lanes and not yet in BullMQ.',
      registers,
    }));
    this.relayed = get('nudge_touch_relayed_total', () => new Counter({
      name: 'nudge_touch_relayed_total',
      help: 'Outbox entries added to BullMQ (a re-add of an existing job id counts and is a no-op).',
      registers,
    }));
    this.outboxRejected = get('nudge_touch_outbox_rejected_total', () => new Counter({
      name: 'nudge_touch_outbox_rejected_total',
      help: 'Outbox entries that did not match the touch job contract, set aside in <outbox>:rejected.',
      registers,
    }));
    this.relayErrors = get('nudge_touch_relay_errors_total', () => new Counter({
      name: 'nudge_touch_relay_errors_total',
      help: 'Relay passes that failed (Redis down, BullMQ error) and were retried with backoff.',
      registers,
    }));
    this.triggerToEnqueue = get('nudge_touch_trigger_to_enqueue_seconds', () => new Histogram({
      name: 'nudge_touch_trigger_to_enqueue_seconds',
      help: 'From a touch decision (triggeredAt) to its job being in BullMQ, for touches due now.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    }));
    this.stalled = get('nudge_touch_stalled_total', () => new Counter({
      name: 'nudge_touch_stalled_total',
      help: 'Touch jobs BullMQ found stalled (a worker died or blocked) and ran again; the send ledger stops a second send.',
      registers,
    }));
  }

  /** The label value for a channel: itself when configured, else `other`. */
  channel(name: string): string {
    return this.channels.has(name) ? name : 'other';
  }

  delivery(channel: string, result: DeliveryResult): void {
    this.deliveries.inc({ channel: this.channel(channel), result });
  }
}
