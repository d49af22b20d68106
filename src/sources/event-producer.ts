import kafka from '@confluentinc/kafka-javascript';
import type { DeliveryReport, LibrdKafkaError, ProducerGlobalConfig } from '@confluentinc/kafka-javascript';
import { ErrorCodes, NudgeError } from '../errors.js';
import { kafkaConnectError, rememberBrokerError } from './kafka-options.js';

export interface EventProducerOptions {
  /** librdkafka connection properties (see `librdkafkaOptions`). */
  connection: Record<string, string | number | boolean>;
  /** Extra librdkafka producer properties, for benchmarks and tests. */
  tuning?: Record<string, string | number | boolean>;
  /** How long `connect()` waits for the broker's metadata. */
  connectTimeoutMs?: number;
}

export interface OutgoingMessage {
  key: string | Buffer | null;
  value: Buffer | Uint8Array | null;
  headers?: Record<string, string>;
  timestampMs?: number;
}

export interface ProduceStats {
  sent: number;
  delivered: number;
  failed: number;
  /** The first delivery error's message (broker-side reasons carry no event data). */
  firstError?: string;
}

/**
 * Producer of encoded events, keyed by user id so one user's events stay in one partition,
 * in order (DESIGN §2.1). Idempotence is on: a retry after a lost acknowledgement cannot
 * duplicate or reorder a message within a partition.
 *
 * Uses the node-rdkafka-style `Producer` with delivery reports rather than the KafkaJS-style
 * `send()`: it queues without a promise per message, which is what a load generator at tens of
 * thousands of events per second needs (confluent-kafka-javascript #42 and #335 were the
 * per-send latency problems of the promise API).
 */
export class EventProducer {
  private readonly producer: kafka.Producer;
  private readonly stats: ProduceStats = { sent: 0, delivered: 0, failed: 0 };
  private drainWaiters: Array<() => void> = [];
  private connected = false;
  /** librdkafka's recent errors: why a connect timed out (a TLS failure only shows here). */
  private readonly brokerErrors: string[] = [];

  constructor(private readonly options: EventProducerOptions) {
    const config = {
      ...options.connection,
      'enable.idempotence': true,
      acks: 'all',
      'linger.ms': 5,
      'compression.type': 'lz4',
      // Bounded local queue: `produce()` waits (see below) instead of buffering without limit.
      'queue.buffering.max.messages': 200_000,
      'queue.buffering.max.kbytes': 65_536,
      dr_cb: true,
      ...options.tuning,
    } as ProducerGlobalConfig;
    this.producer = new kafka.Producer(config);
    this.producer.on('event.error', (err: LibrdKafkaError) => rememberBrokerError(this.brokerErrors, err.message));
    // A failed TLS handshake is only logged (FAIL, severity 3), then reported as "all brokers down".
    this.producer.on('event.log', (log: { severity: number; message: string }) => {
      if (log.severity <= 4) rememberBrokerError(this.brokerErrors, log.message);
    });
    this.producer.on('delivery-report', (err: LibrdKafkaError, report: DeliveryReport) => {
      const waiter = report?.opaque as ((err: LibrdKafkaError | null) => void) | undefined;
      if (typeof waiter === 'function') waiter(err ?? null);
      if (err) {
        this.stats.failed++;
        this.stats.firstError ??= err.message;
      } else {
        this.stats.delivered++;
      }
      if (this.inFlight() === 0) this.wakeDrainWaiters();
    });
  }

  async connect(): Promise<void> {
    const timeout = this.options.connectTimeoutMs ?? 30_000;
    const brokers = String(this.options.connection['bootstrap.servers'] ?? '');
    // librdkafka reports why a connect fails (a certificate that does not verify, a refused
    // login) as events, which a producer only receives when polled: poll while it is pending.
    const poller = setInterval(() => {
      if (this.producer.isConnected()) this.producer.poll();
    }, 100);
    await new Promise<void>((resolve, reject) => {
      this.producer.connect({ timeout }, (err) => {
        if (err) {
          reject(
            new NudgeError(
              ErrorCodes.KAFKA_UNAVAILABLE,
              kafkaConnectError(
                brokers,
                this.brokerErrors,
                `cannot reach the Kafka broker at ${brokers} (${err.message}). Start one (npm run services, or docker compose up -d kafka) or point NUDGE_KAFKA_BROKERS at yours.`,
              ),
              { retriable: true, context: { brokers }, cause: err },
            ),
          );
        } else resolve();
      });
    }).finally(() => clearInterval(poller));
    // Delivery reports are served by polling; 50 ms keeps latency low at negligible CPU.
    this.producer.setPollInterval(50);
    this.connected = true;
  }

  /**
   * Queues one event. When librdkafka's local queue is full it waits for deliveries to make
   * room, so a fast caller is slowed to the broker's pace instead of failing or using memory.
   */
  async produce(topic: string, key: string, value: Uint8Array, timestampMs?: number, partition?: number): Promise<void> {
    const buf = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    for (;;) {
      try {
        this.producer.produce(topic, partition ?? null, buf, key, timestampMs ?? null);
        this.stats.sent++;
        return;
      } catch (err) {
        if (isQueueFull(err)) {
          await new Promise((r) => setTimeout(r, 5));
          this.producer.poll();
          continue;
        }
        throw new NudgeError(ErrorCodes.KAFKA_DELIVERY, `could not queue an event for topic ${topic}: ${(err as Error).message}`, {
          cause: err,
          context: { topic },
        });
      }
    }
  }

  /**
   * Produces messages and resolves when the broker acknowledged all of them (rejects on the
   * first failure). For the dead-letter topic and HTTP ingest, where an answer means "durable".
   */
  async sendAndWait(topic: string, messages: OutgoingMessage[], timeoutMs = 30_000): Promise<void> {
    const acks = messages.map(
      (m) =>
        new Promise<void>((resolve, reject) => {
          const waiter = (err: LibrdKafkaError | null): void => (err ? reject(err) : resolve());
          const value = Buffer.isBuffer(m.value) ? m.value : m.value === null ? null : Buffer.from(m.value);
          const headers = m.headers ? Object.entries(m.headers).map(([k, v]) => ({ [k]: Buffer.from(v) })) : undefined;
          this.queue(() => this.producer.produce(topic, null, value, m.key ?? null, m.timestampMs ?? null, waiter, headers)).then(
            () => this.stats.sent++,
            reject,
          );
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new NudgeError(ErrorCodes.KAFKA_DELIVERY, `the broker did not acknowledge ${messages.length} message(s) to ${topic} within ${timeoutMs} ms; is it up?`, { retriable: true })),
        timeoutMs,
      );
    });
    try {
      await Promise.race([Promise.all(acks), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Messages queued and not yet acknowledged or failed. */
  inFlight(): number {
    return this.stats.sent - this.stats.delivered - this.stats.failed;
  }

  getStats(): Readonly<ProduceStats> {
    return { ...this.stats };
  }

  /** Waits until every queued message is acknowledged or has failed. */
  async flush(timeoutMs = 60_000): Promise<ProduceStats> {
    await new Promise<void>((resolve, reject) => {
      this.producer.flush(timeoutMs, (err) => (err ? reject(err) : resolve()));
    });
    // flush() returns when librdkafka's queue is empty; delivery reports arrive on the next poll.
    if (this.inFlight() > 0) {
      await new Promise<void>((resolve) => {
        this.drainWaiters.push(resolve);
        this.producer.poll();
      });
    }
    return this.getStats();
  }

  async disconnect(): Promise<void> {
    if (!this.connected) return;
    this.connected = false;
    await new Promise<void>((resolve) => this.producer.disconnect(10_000, () => resolve()));
  }

  /** Runs a produce call, waiting for room while librdkafka's local queue is full. */
  private async queue(produce: () => void): Promise<void> {
    for (;;) {
      try {
        produce();
        return;
      } catch (err) {
        if (!isQueueFull(err)) throw err;
        await new Promise((r) => setTimeout(r, 5));
        this.producer.poll();
      }
    }
  }

  private wakeDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }
}

function isQueueFull(err: unknown): boolean {
  const code = (err as { code?: number } | null)?.code;
  return code === kafka.CODES.ERRORS.ERR__QUEUE_FULL;
}
