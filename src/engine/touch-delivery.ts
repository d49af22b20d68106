import { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { NudgeConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { RulesSpec } from '../rules/rules-spec.js';
import { refusedAtSend } from '../rules/send-time-check.js';
import type { StateQueries } from '../state/queries.js';
import { dayNumber } from '../time/calendar.js';
import { BudgetLedger } from '../touches/budget-ledger.js';
import { BudgetSnapshot } from '../touches/budget-snapshot.js';
import type { ChannelAdapter, RecheckFn } from '../touches/channel-adapter.js';
import { DisabledEndpoints } from '../touches/channels/disabled-endpoints.js';
import { LogAdapter } from '../touches/channels/log-adapter.js';
import { WebhookAdapter } from '../touches/channels/webhook-adapter.js';
import { listFailedTouches, type FailedTouch } from '../touches/failed-touches.js';
import { OutboxRelay } from '../touches/outbox-relay.js';
import { watchTouchQueue } from '../touches/queue-gauges.js';
import { openTouchQueue, type TouchQueue } from '../touches/touch-queue.js';
import { TouchMetrics } from '../touches/touch-metrics.js';
import { TouchWorker } from '../touches/touch-worker.js';
import type { TouchJob } from '../touches/touch-job.js';
import { ioredisOptions } from '../state/redis-options.js';

export interface TouchDeliveryOptions {
  config: NudgeConfig;
  rules: RulesSpec;
  logger: Logger;
  registry: Registry;
  /** The outbox keys of the lanes this instance owns (the relay drains only those). */
  outboxKeys: () => readonly string[];
  /** Reads user state for the send-time re-check. */
  queries: StateQueries;
  /** Run the outbox relay (the engine) and/or the delivery workers (`nudge worker`). */
  relay: boolean;
  workers: boolean;
  clock?: () => number;
  /** Test seam (EngineOptions.onCrashPoint): after the relay's addBulk, before it clears the outbox. */
  onRelayAdded?: () => void;
}

/**
 * Wires the touches layer for a running engine or worker: the outbox relay into BullMQ, the
 * workers with one adapter per channel, and the send-time re-check of the policy gate
 * (consent, exits, the journey's budget — charged atomically here, so never overspent).
 */
export class TouchDelivery {
  private readonly connection: Redis;
  private readonly queue: TouchQueue;
  private readonly metrics: TouchMetrics;
  private relay: OutboxRelay | null = null;
  private worker: TouchWorker | null = null;
  private stopGauges: (() => void) | null = null;
  /** The journeys' budgets as the decision step sees them (refreshed while the relay runs). */
  readonly budgets: BudgetSnapshot;

  constructor(private readonly o: TouchDeliveryOptions) {
    const { url, options } = ioredisOptions(o.config.redis);
    // BullMQ needs its own connection that waits for Redis forever (maxRetriesPerRequest: null).
    this.connection = new Redis(url, { ...options, maxRetriesPerRequest: null });
    this.connection.on('error', (err: Error) => o.logger.warn({ err: err.message }, 'touch queue: redis connection error; retrying'));
    this.queue = openTouchQueue({ connection: this.connection, name: o.config.touches.queue });
    // Without a listener BullMQ's Queue prints the raw ioredis error with console.error, and a
    // failed login's error carries the command, `HELLO 3 AUTH <user> <password>`: the password
    // reached stderr (tests/chaos/access.test.ts). The message alone carries no arguments.
    this.queue.on('error', (err: Error) => o.logger.warn({ err: err.message }, 'touch queue error; BullMQ retries'));
    this.metrics = new TouchMetrics(o.registry, channelsOf(o.config, o.rules));
    this.budgets = new BudgetSnapshot({
      ledger: new BudgetLedger(this.connection, o.config.redis.keyPrefix),
      limits: o.rules.journeys.flatMap((j) => (j.budget !== null && j.budget.costPerTouch > 0 ? [{ journeyId: j.id, total: j.budget.total, perDay: j.budget.perDay }] : [])),
      dayOf: (ms) => dayNumber(ms, o.rules.reportingTimeZone),
      clock: o.clock ?? Date.now,
      logger: o.logger,
    });
  }

  start(): void {
    const { config, logger } = this.o;
    if (this.o.relay) {
      this.relay = new OutboxRelay({
        redis: this.connection,
        queue: this.queue,
        outboxKeys: this.o.outboxKeys,
        jobPolicy: { attempts: config.touches.attempts, keepCompletedSeconds: Math.round(config.touches.keepCompletedMs / 1000) },
        metrics: this.metrics,
        logger,
        ...(this.o.onRelayAdded !== undefined ? { onAdded: this.o.onRelayAdded } : {}),
      });
      this.relay.start();
      // The relay runs where decisions are made (the engine): so does the budget view.
      this.budgets.start();
    }
    if (this.o.workers) {
      const disabled = new DisabledEndpoints(this.connection, config.redis.keyPrefix);
      this.worker = new TouchWorker({
        connection: this.connection,
        queueName: config.touches.queue,
        namespace: config.redis.keyPrefix,
        adapters: adaptersOf(config, this.o.rules, logger, disabled),
        channels: Object.fromEntries(
          Object.entries(config.touches.channels).map(([ch, c]) => [
            ch,
            { concurrency: c.concurrency, ...(c.rateLimit ? { rate: { max: c.rateLimit.max, durationMs: c.rateLimit.perMs } } : {}) },
          ]),
        ),
        recheck: sendTimeRecheck(this.o, new BudgetLedger(this.connection, config.redis.keyPrefix)),
        backoff: { initialMs: config.touches.backoffMs },
        ledgerTtlMs: config.touches.keepCompletedMs + 86_400_000,
        metrics: this.metrics,
        logger,
      });
      this.stopGauges = watchTouchQueue(this.queue, this.metrics);
    }
  }

  /** The failed-job view: the latest touches that ran out of attempts (no personal data). */
  failed(limit = 100): Promise<FailedTouch[]> {
    return listFailedTouches(this.queue, { start: 0, end: limit - 1 });
  }

  /** Called after a commit that wrote touches: relay them now rather than at the next poll. */
  wake(): void {
    this.relay?.wake();
  }

  async stop(): Promise<void> {
    this.budgets.stop();
    this.stopGauges?.();
    await this.relay?.stop();
    await this.worker?.close();
    await this.queue.close();
    this.connection.disconnect();
  }
}

/** Every channel a journey can use or the config names: metric labels stay a fixed set. */
function channelsOf(config: NudgeConfig, rules: RulesSpec): string[] {
  const set = new Set(Object.keys(config.touches.channels));
  for (const j of rules.journeys) for (const s of j.steps) for (const c of s.channels) set.add(c);
  return [...set].sort();
}

function adaptersOf(config: NudgeConfig, rules: RulesSpec, logger: Logger, disabled: DisabledEndpoints): ChannelAdapter[] {
  return channelsOf(config, rules).map((channel) => {
    const c = config.touches.channels[channel];
    if (c?.webhook !== undefined) {
      return new WebhookAdapter({ channel, url: c.webhook.url, secret: c.webhook.secret, timeoutMs: c.webhook.timeoutMs, allowPrivateAddresses: c.webhook.allowPrivateAddresses, disabled });
    }
    return new LogAdapter(logger, channel);
  });
}

/**
 * The policy gate again, just before a provider is called: the user may have opted out or
 * left the journey since the decision (rules/send-time-check.ts), and the journey's budget is
 * charged now, atomically.
 */
function sendTimeRecheck(o: TouchDeliveryOptions, budgets: BudgetLedger): RecheckFn {
  const clock = o.clock ?? Date.now;
  const journeys = new Map(o.rules.journeys.map((j) => [j.id, j]));
  return async (job: TouchJob) => {
    const journey = journeys.get(job.journeyId);
    if (journey === undefined) return { send: false, reason: 'journey_removed' };
    const state = await o.queries.userState(job.userId);
    const refused = refusedAtSend(o.rules.policy, state?.journeys, job);
    if (refused !== null) return { send: false, reason: refused };
    const b = journey.budget;
    if (b !== null && b.costPerTouch > 0) {
      const outcome = await budgets.reserve(job.journeyId, job.touchId, { cost: b.costPerTouch, total: b.total, perDay: b.perDay }, dayNumber(clock(), o.rules.reportingTimeZone));
      if (outcome === 'budget_exhausted' || outcome === 'daily_budget_exhausted') return { send: false, reason: outcome };
    }
    return { send: true, reason: 'ok' };
  };
}
