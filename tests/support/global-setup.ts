import type { TestProject } from 'vitest/node';
import { startRedisServer } from '../../src/dev/redis-server.js';
import { startKafkaBroker } from '../../scripts/services/kafka-broker.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `redis://127.0.0.1:PORT`; tests namespace their keys (tests/support/redis.ts). */
    redisUrl: string;
    /** Bootstrap servers, comma-separated; tests use unique topic and group names. */
    kafkaBrokers: string;
    /** Which services this run started itself (and so configured), rather than took from env. */
    startedServices: { redis: boolean; kafka: boolean };
  }
}

interface Service {
  url: string;
  started: boolean;
  stop(): Promise<void>;
}

const say = (msg: string) => process.stdout.write(`[services] ${msg}\n`);

/**
 * Starts one private Redis and one Kafka broker for the whole run (DESIGN §6), in parallel,
 * unless REDIS_URL / KAFKA_BROKERS point at existing ones. Each prints one line, so a CI log
 * shows that real services were used and which.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const results = await Promise.allSettled([redisService(), kafkaService()]);
  const services = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  const stopAll = async () => {
    await Promise.all(services.map((s) => s.stop()));
  };
  if (failure !== undefined) {
    // Do not leave the one that did start running while vitest reports the failure.
    await stopAll();
    throw failure.reason;
  }
  const [redis, kafka] = services as [Service, Service];
  project.provide('redisUrl', redis.url);
  project.provide('kafkaBrokers', kafka.url);
  project.provide('startedServices', { redis: redis.started, kafka: kafka.started });
  return stopAll;
}

async function redisService(): Promise<Service> {
  const given = process.env.REDIS_URL;
  if (given !== undefined && given !== '') {
    say(`redis: using REDIS_URL=${given} (not started)`);
    return { url: given, started: false, stop: async () => {} };
  }
  const started = Date.now();
  const redis = await startRedisServer({ log: say });
  say(`redis: started redis-server on ${redis.url} (pid ${redis.pid}) in ${Date.now() - started} ms`);
  return { url: redis.url, started: true, stop: () => redis.stop() };
}

async function kafkaService(): Promise<Service> {
  const given = process.env.KAFKA_BROKERS;
  if (given !== undefined && given !== '') {
    say(`kafka: using KAFKA_BROKERS=${given} (not started)`);
    return { url: given, started: false, stop: async () => {} };
  }
  const started = Date.now();
  const kafka = await startKafkaBroker({ log: say });
  say(
    `kafka: started Apache Kafka broker (KRaft) on ${kafka.brokers} (pid ${kafka.pid}, data ${kafka.dataDir}) ` +
      `in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  return { url: kafka.brokers, started: true, stop: () => kafka.stop() };
}
