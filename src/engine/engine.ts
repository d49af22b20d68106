import { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { NudgeConfig } from '../config/schema.js';
import { ErrorCodes, NudgeError } from '../errors.js';
import type { Logger } from '../log.js';
import { PipelineMetrics } from '../metrics/pipeline-metrics.js';
import { Lanes, type LanesOptions } from '../pipeline/lanes.js';
import { settlesWithin } from '../pipeline/settles-within.js';
import { TimerSweep } from '../pipeline/timer-sweep.js';
import type { DeadLetter, DeadLetterSink } from '../pipeline/types.js';
import { EventProducer } from '../sources/event-producer.js';
import { KafkaSource } from '../sources/kafka-source.js';
import type { EventSink, EventSource } from '../sources/event-source.js';
import { librdkafkaOptions } from '../sources/kafka-options.js';
import { LaneStore } from '../state/lane-store.js';
import { StateQueries } from '../state/queries.js';
import { ioredisOptions } from '../state/redis-options.js';
import type { StateSpec } from '../state/spec.js';
import { DEFAULT_EVENT_LIMITS, type EventLimits } from '../contract/validate.js';
import { OpsServer } from '../http/ops-server.js';
import { registerQueryRoutes } from '../http/query-routes.js';
import { registerIngestRoute } from '../http/ingest-route.js';
import { assertRedisSafe, redisConnectMessage } from './redis-guard.js';
import { TouchDelivery } from './touch-delivery.js';
import { journeyStats } from '../state/journey-stats.js';
import { StateGauges } from '../metrics/state-gauges.js';
import { BudgetLedger } from '../touches/budget-ledger.js';
import { dayNumber } from '../time/calendar.js';

export interface EngineOptions {
  config: NudgeConfig;
  spec: StateSpec;
  logger: Logger;
  registry: Registry;
  /** The wall clock (timers, future clamping); tests inject virtual time. */
  clock?: () => number;
  sweepIntervalMs?: number;
  /** Serve the ops API (default true). */
  http?: boolean;
  /** Consumer tuning for tests and benchmarks. */
  maxBatch?: number;
  maxInFlight?: number;
  /**
   * How long `stop()` waits, in all, for in-flight work to finish and connections to close
   * before it gives up on them (see `stop`).
   * @default 10_000
   */
  stopTimeoutMs?: number;
  /**
   * How often `nudge_consumer_lag` is measured.
   * @default 5_000
   */
  lagIntervalMs?: number;
  /**
   * How often the engagement and journey gauges are read from Redis.
   * @default 15_000
   */
  stateGaugesIntervalMs?: number;
  /** Run the touch delivery workers in this process too (`nudge run`: yes; tests: as needed). */
  workers?: boolean;
  /**
   * Run the outbox relay (default true). Off, decided touches wait in the lanes' outboxes until
   * an engine with a relay owns the lanes: how tests stand still between commit and enqueue.
   */
  relay?: boolean;
  /** The pure state steps; seams for tests (see LanesOptions). @default applyEvents / applyTimers */
  decide?: LanesOptions['decide'];
  decideTimers?: LanesOptions['decideTimers'];
  /**
   * Runs without Kafka (`nudge demo`, DESIGN §2.5): events come from `source` instead of the
   * consumer group, dead letters go to `deadLetters` instead of the DLQ topic, and
   * `POST /v1/events` hands events to `ingest`. No Kafka client is created.
   */
  embedded?: { source: EventSource; deadLetters: DeadLetterSink; ingest: EventSink };
  /**
   * Test seam for the crash tests (tests/chaos/engine-crash.test.ts): called, synchronously, at
   * the moments where dying is most interesting, so a test can kill the process exactly there.
   * `touches-committed`: a batch's state and outbox entries are in Redis, the relay not yet
   * woken. `batch-committed`: a batch is committed in Redis, its Kafka offset not yet.
   * `relay-added`: the relay's addBulk put touches in BullMQ, the outbox is not cleared yet. Unset in
   * production (the offset committer is then the source itself: no wrapper, no cost).
   */
  onCrashPoint?: (point: CrashPoint) => void;
}

export type CrashPoint = 'touches-committed' | 'batch-committed' | 'relay-added';

const DEFAULT_STOP_TIMEOUT_MS = 10_000;

/**
 * Wires the streaming state core: Kafka source -> lanes -> Redis, the timer sweep, the
 * dead-letter producer and the ops API. It decides nothing itself (STYLE.md: orchestrators
 * wire); every decision lives in `state/` and `pipeline/`.
 */
export class Engine {
  readonly redis: Redis;
  /** The server's last error: why a first connection failed (a refused login shows only here). */
  private lastRedisError = '';
  readonly queries: StateQueries;
  readonly metrics: PipelineMetrics;
  readonly stateGauges: StateGauges;
  /** null when embedded (no Kafka). */
  private readonly producer: EventProducer | null;
  private readonly source: EventSource;
  private readonly budgetLedger: BudgetLedger;
  private readonly lanes: Lanes;
  private readonly sweep: TimerSweep;
  private ops: OpsServer | null = null;
  private started = false;
  opsUrl: string | null = null;
  /** The outbox relay and workers; null when no journey is configured. */
  readonly delivery: TouchDelivery | null;

  constructor(private readonly o: EngineOptions) {
    const { config, logger } = o;
    const clock = o.clock ?? Date.now;
    const { url, options } = ioredisOptions(config.redis);
    this.redis = new Redis(url, { ...options, lazyConnect: true });
    this.redis.on('error', (err: Error) => {
      this.lastRedisError = err.message;
      logger.warn({ err: err.message }, 'redis connection error; commands wait for the reconnect');
    });
    this.metrics = new PipelineMetrics(o.registry);
    const store = new LaneStore(this.redis, config.redis.keyPrefix, config.kafka.topic, (partition, seenOffset) => this.rereadLostLane(partition, seenOffset));
    // Also after `start()`'s first connection: a reconnection may be to a Redis that restarted
    // without its last writes, and a lane with nothing left to commit would not notice by itself.
    this.redis.on('ready', () => {
      store.checkFences(this.lanes.ownedPartitions()).catch((err: Error) => logger.warn({ err: err.message }, 'lane fences not checked after the Redis reconnection; a lost write shows at the next commit'));
    });
    this.queries = new StateQueries(this.redis, config.redis.keyPrefix, config.kafka.topic, o.spec);
    const budgets = (this.budgetLedger = new BudgetLedger(this.redis, config.redis.keyPrefix));
    this.stateGauges = new StateGauges({
      registry: o.registry,
      logger,
      today: () => dayNumber(clock(), o.spec.reportingTimeZone),
      activityMetrics: o.spec.metrics.map((m) => m.name),
      journeys: o.spec.rules?.journeys ?? [],
      engagement: this.queries,
      journeySources: { stats: (id) => journeyStats(this.queries, id), spent: (id, day) => budgets.spent(id, day) },
      ...(o.stateGaugesIntervalMs !== undefined ? { intervalMs: o.stateGaugesIntervalMs } : {}),
    });
    const connection = librdkafkaOptions(config.kafka);
    this.producer = o.embedded === undefined ? new EventProducer({ connection }) : null;
    const dlq = o.embedded?.deadLetters ?? deadLetterSink(this.producer as EventProducer, config.kafka.dlqTopic);
    this.source = o.embedded?.source ?? new KafkaSource({
      connection,
      topic: config.kafka.topic,
      groupId: config.kafka.groupId,
      logger,
      lag: {
        set: (partition, lag) => this.metrics.consumerLag.set({ partition: String(partition) }, lag),
        clear: (partition) => this.metrics.consumerLag.remove({ partition: String(partition) }),
      },
      ...(o.maxBatch !== undefined ? { maxBatch: o.maxBatch } : {}),
      ...(o.lagIntervalMs !== undefined ? { lagIntervalMs: o.lagIntervalMs } : {}),
    });
    const rules = o.spec.rules;
    this.delivery =
      rules !== undefined && rules.journeys.length > 0
        ? new TouchDelivery({
            config,
            rules,
            logger,
            registry: o.registry,
            queries: this.queries,
            outboxKeys: () => this.lanes.ownedPartitions().map((p) => store.keys(p).outbox),
            relay: o.relay ?? true,
            workers: o.workers ?? true,
            clock,
            ...(o.onCrashPoint !== undefined ? { onRelayAdded: () => o.onCrashPoint?.('relay-added') } : {}),
          })
        : null;
    const crashPoint = o.onCrashPoint;
    const source = this.source;
    this.lanes = new Lanes({
      store,
      onTouches: () => {
        crashPoint?.('touches-committed');
        this.delivery?.wake();
      },
      // The decision step sees the journeys' budgets as last read from the ledger (DESIGN §3).
      spec: this.delivery !== null ? { ...o.spec, budgets: this.delivery.budgets } : o.spec,
      limits: this.limits(),
      dlq,
      offsets:
        crashPoint === undefined
          ? source
          : {
              commit: (partition, nextOffset) => {
                crashPoint('batch-committed');
                source.commit(partition, nextOffset);
              },
            },
      metrics: this.metrics,
      logger,
      clock,
      ...(o.maxInFlight !== undefined ? { maxInFlight: o.maxInFlight } : {}),
      ...(o.decide !== undefined ? { decide: o.decide } : {}),
      ...(o.decideTimers !== undefined ? { decideTimers: o.decideTimers } : {}),
    });
    this.sweep = new TimerSweep({
      lanes: this.lanes,
      store,
      metrics: this.metrics,
      logger,
      clock,
      intervalMs: o.sweepIntervalMs ?? config.lifecycle.sweepIntervalMs,
    });
  }

  async start(): Promise<void> {
    const { config, logger } = this.o;
    try {
      await this.redis.connect();
    } catch (err) {
      throw new NudgeError(ErrorCodes.REDIS_UNAVAILABLE, redisConnectMessage(redactUrl(config.redis.url), err as Error, this.lastRedisError), {
        retriable: true,
        cause: err,
      });
    }
    await assertRedisSafe(this.redis);
    await this.producer?.connect();
    if (this.o.http ?? true) {
      this.ops = new OpsServer({
        host: config.http.host,
        port: config.http.port,
        registry: this.o.registry,
        logger,
        ...(config.http.token !== undefined ? { token: config.http.token } : {}),
        metricsRequireToken: config.http.metricsRequireToken,
        readiness: [
          { name: 'redis', check: () => this.redis.status === 'ready' },
          { name: this.o.embedded === undefined ? 'kafka' : 'source', check: () => this.source.isConnected() },
          { name: 'assigned', check: () => this.lanes.ownedPartitions().length > 0 },
        ],
      });
      registerQueryRoutes(this.ops, this.queries, { clock: this.o.clock ?? Date.now, reportingTimeZone: this.o.spec.reportingTimeZone, metrics: this.o.spec.metrics.map((m) => m.name), breakdowns: this.o.spec.breakdowns.map((b) => b.name),
        journeys: (this.o.spec.rules?.journeys ?? []).map((j) => ({ id: j.id, description: j.description, priority: j.priority })),
        journeyStats: (id) => journeyStats(this.queries, id, this.budgetLedger),
        ...(this.delivery !== null ? { failedTouches: () => (this.delivery as TouchDelivery).failed() } : {}),
      });
      registerIngestRoute(this.ops, this.o.embedded?.ingest ?? (this.producer as EventProducer), { topic: config.kafka.topic, limits: this.limits(), clock: Date.now });
      this.opsUrl = (await this.ops.listen()).url;
      logger.info({ url: this.opsUrl }, 'ops API listening');
    }
    await this.source.start({
      onAssigned: (partitions) => {
        logger.info({ partitions }, 'partitions assigned');
        return this.lanes.assign(partitions);
      },
      onRevoked: (partitions) => {
        logger.info({ partitions }, 'partitions revoked');
        this.lanes.revoke(partitions);
      },
      onBatch: (batch) => this.lanes.submit(batch),
    });
    this.sweep.start();
    this.stateGauges.start();
    this.delivery?.start();
    this.started = true;
    logger.info({ topic: config.kafka.topic, group: config.kafka.groupId }, 'engine started');
  }

  private limits(): EventLimits {
    return { ...DEFAULT_EVENT_LIMITS, ...this.o.config.events };
  }

  /** Runs one timer sweep now (tests on virtual time). */
  sweepNow(): Promise<number> {
    return this.sweep.sweepOnce();
  }

  ownedPartitions(): number[] {
    return this.lanes.ownedPartitions();
  }

  /** Resolves when no batch is in flight. */
  idle(): Promise<void> {
    return this.lanes.idle();
  }

  /**
   * Graceful stop: no new reads, in-flight batches finish and commit, then the group is left.
   *
   * Bounded by `stopTimeoutMs` in all, so a stop never hangs on a Redis (or broker) that is
   * down — commands wait for the reconnection without limit (maxRetriesPerRequest: null), so an
   * unbounded stop would wait for Redis to come back. Past the deadline the batches still in
   * flight are abandoned and the Redis connection is dropped rather than quit. That is safe:
   * an abandoned batch committed nothing and moved no offset, so the partition's next owner
   * reads it again (its dead letters, if already sent, are sent again: at least once).
   */
  /** Redis lost writes of a lane it had acknowledged: have the partition read again from Redis' fence. */
  private rereadLostLane(partition: number, seenOffset: number): void {
    const logger = this.o.logger;
    logger.error(
      { code: ErrorCodes.REDIS_STATE_LOST, partition, seenOffset },
      'Redis lost writes it had acknowledged (restarted from an AOF without its last second, or failed over to a lagging replica): the partition is claimed again at the fence Redis holds and the lost offsets are read again from Kafka. Touches decided in the lost writes are decided again; provider idempotency keys absorb a resend. Use appendfsync always to avoid this.',
    );
    if (this.source.reclaim === undefined) logger.error({ partition }, 'this source cannot re-read; restart the process to resume from Redis\' fence');
    this.source.reclaim?.([partition]);
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    const started = Date.now();
    const deadline = started + (this.o.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS);
    const left = () => Math.max(0, deadline - Date.now());
    this.stateGauges.stop();
    await this.sweep.stop(left());
    // Read no more, let the lanes finish (their offsets are committed while the consumer is
    // still in the group), then disconnect: disconnecting first dropped the last batches'
    // offset commits, leaving the group behind the state after every graceful stop.
    let clean = await settlesWithin(this.source.stopReading(left()), left());
    clean = (await this.lanes.close(left())) && clean;
    clean = (await settlesWithin(this.source.stop(left()), left())) && clean;
    // After the lanes: the relay moves what their last commits wrote, if it can.
    clean = (await settlesWithin(this.delivery?.stop() ?? Promise.resolve(), left())) && clean;
    clean = (await settlesWithin(this.producer?.disconnect() ?? Promise.resolve(), left())) && clean;
    await settlesWithin(this.ops?.close() ?? Promise.resolve(), left());
    if (!(await settlesWithin(this.redis.quit(), clean ? Math.max(left(), 1_000) : 0))) {
      // Drops the connection and rejects the commands waiting for it, so the abandoned
      // batches' retry loops see their lane revoked and end.
      this.redis.disconnect();
      clean = false;
    }
    if (clean) this.o.logger.info('engine stopped');
    else {
      this.o.logger.warn(
        { waitedMs: Date.now() - started, stopTimeoutMs: this.o.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS },
        'engine stopped without finishing in-flight work (Redis or Kafka unreachable?); nothing of it was committed, the next owner of the partitions reads it again',
      );
    }
  }
}

function deadLetterSink(producer: EventProducer, topic: string): DeadLetterSink {
  return {
    send: (entries: DeadLetter[]) =>
      producer.sendAndWait(
        topic,
        entries.map((d) => ({
          key: d.key,
          value: d.value,
          headers: {
            'nudge-error-code': d.code,
            'nudge-error': d.reason,
            'nudge-source-partition': String(d.partition),
            'nudge-source-offset': String(d.offset),
          },
        })),
      ),
  };
}

function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
