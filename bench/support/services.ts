import { startRedisServer } from '../../src/dev/redis-server.js';
import { startKafkaBroker } from '../../scripts/services/kafka-broker.js';
import { progress } from './report.js';

export interface BenchServices {
  brokers: string;
  redisUrl: string;
  /** Which of them this process started (and so measures alone: nobody else's load on them). */
  started: { kafka: boolean; redis: boolean };
}

/** Set by bench/run-all.ts on the benches it runs with the services it started for them. */
export const PRIVATE_SERVICES_ENV = 'NUDGE_BENCH_PRIVATE_SERVICES';

type Cleanup = () => Promise<void>;
const cleanups: Cleanup[] = [];
let cleaning: Promise<void> | null = null;
let handlersInstalled = false;
let stopping = false;

/** True once Ctrl-C / SIGTERM started the cleanup: failures after that are its consequence. */
export function interrupted(): boolean {
  return stopping;
}

/**
 * Registers work to undo at the end (stop a service, delete a topic), run in reverse order by
 * `cleanup()` on success, on error and on Ctrl-C / SIGTERM.
 */
export function onCleanup(fn: Cleanup): void {
  installSignalHandlers();
  cleanups.push(fn);
}

/** Runs every registered cleanup once (later calls share the first run), newest first. */
export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length > 0) {
      const fn = cleanups.pop() as Cleanup;
      await fn().catch((err: unknown) => progress(`cleanup step failed: ${err instanceof Error ? err.message : String(err)}`));
    }
  })();
  return cleaning;
}

function installSignalHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // Keep listening after the first signal: npm and tsx relay the terminal's SIGINT again, and a
  // signal with no listener left would kill us before the broker and Redis are stopped. (They
  // are also guarded by killWhenParentDies, but a controlled stop removes their temp dirs.)
  const onSignal = (name: NodeJS.Signals): void => {
    if (stopping) {
      progress(`${name}: still stopping the services (Kafka's controlled shutdown takes a few seconds)...`);
      return;
    }
    stopping = true;
    progress(`${name}: stopping the services this bench started...`);
    void cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/**
 * A private redis-server and a single-node Apache Kafka broker (KRaft), started in parallel, or
 * the ones KAFKA_BROKERS / REDIS_URL point at. Started ones are stopped by `cleanup()`.
 */
export async function benchServices(need: { kafka: boolean } = { kafka: true }): Promise<BenchServices> {
  const givenBrokers = need.kafka ? nonEmpty(process.env.KAFKA_BROKERS) : '';
  const givenRedis = nonEmpty(process.env.REDIS_URL);
  const started = Date.now();
  const [redis, kafka] = await Promise.allSettled([
    givenRedis === undefined ? startRedisServer({ log: progress }) : Promise.resolve(null),
    givenBrokers === undefined ? startKafkaBroker({ log: progress }) : Promise.resolve(null),
  ]);
  if (redis.status === 'fulfilled' && redis.value !== null) {
    const handle = redis.value;
    onCleanup(() => handle.stop());
  }
  if (kafka.status === 'fulfilled' && kafka.value !== null) {
    const handle = kafka.value;
    onCleanup(() => handle.stop());
  }
  const failed = [redis, kafka].find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  const redisUrl = givenRedis ?? (redis.status === 'fulfilled' && redis.value ? redis.value.url : '');
  const brokers = givenBrokers ?? (kafka.status === 'fulfilled' && kafka.value ? kafka.value.brokers : '');
  // bench/run-all.ts starts one private pair for all benches and passes it on: still nobody
  // else's load on them, so the per-event Redis CPU stays meaningful.
  const privatePair = process.env[PRIVATE_SERVICES_ENV] === '1';
  progress(
    `services: redis ${redisUrl} (${givenRedis === undefined ? 'started' : 'REDIS_URL'})` +
      (need.kafka ? `, kafka ${brokers} (${givenBrokers === undefined ? 'started' : 'KAFKA_BROKERS'})` : '') +
      ` in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  return {
    brokers,
    redisUrl,
    started: { redis: givenRedis === undefined || privatePair, kafka: givenBrokers === undefined || privatePair },
  };
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}
