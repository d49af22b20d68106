import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { decodeEvent } from '../../src/contract/event.js';
import { freePort, startRedisServer, type RedisServerHandle } from '../../src/dev/redis-server.js';
import { startKafkaBroker, type KafkaBrokerHandle } from '../../scripts/services/kafka-broker.js';

/**
 * Services the chaos tests kill and start again (issue 6 items 3, 4 and 8): a private
 * redis-server and a private Kafka broker, each restartable on the same port and data dir, so
 * the engine's connections point at the same address before and after. The shared services of
 * the global setup are never killed: other test files use them.
 */

export interface RestartableRedis {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** The current redis-server process. */
  readonly server: RedisServerHandle;
  /** SIGKILL: no AOF rewrite, no flush beyond what `appendfsync` already did. */
  crash(): Promise<void>;
  /** Starts redis-server again on the same port and dir; it reloads the AOF before "ready". */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** A private redis-server with the append-only file on, `appendfsync` as given. */
export async function startRestartableRedis(o: { appendfsync?: 'always' | 'everysec' | 'no'; extraArgs?: string[] } = {}): Promise<RestartableRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'nudge-chaos-redis-'));
  const port = await freePort();
  const args = ['--appendfsync', o.appendfsync ?? 'everysec', ...(o.extraArgs ?? [])];
  const start = () => startRedisServer({ port, dir, appendonly: true, extraArgs: args, readyTimeoutMs: 60_000 });
  let server = await start();
  return {
    url: server.url,
    port,
    dir,
    get server() {
      return server;
    },
    crash: () => server.kill('SIGKILL'),
    async restart() {
      server = await start();
    },
    async stop() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface RestartableBroker {
  readonly brokers: string;
  readonly broker: KafkaBrokerHandle;
  crash(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A private single-node KRaft broker that survives SIGKILL and restart on its data dir. The
 * broker's own session with its controller is shortened (9 s by default), so a restarted
 * broker is not kept waiting for its dead self's session to expire.
 */
export async function startRestartableBroker(): Promise<RestartableBroker> {
  const dataDir = await mkdtemp(join(tmpdir(), 'nudge-chaos-kafka-'));
  const port = await freePort();
  let controllerPort = await freePort();
  while (controllerPort === port) controllerPort = await freePort();
  const start = () =>
    startKafkaBroker({
      port,
      controllerPort,
      dataDir,
      properties: { 'broker.session.timeout.ms': 3000, 'broker.heartbeat.interval.ms': 500 },
      readyTimeoutMs: 120_000,
    });
  let broker = await start();
  return {
    brokers: broker.brokers,
    get broker() {
      return broker;
    },
    crash: () => broker.kill(),
    async restart() {
      broker = await start();
    },
    async stop() {
      await broker.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The event id a message's bytes carry, or null when they do not decode. */
export function eventIdOf(value: Buffer): string | null {
  const decoded = decodeEvent(value);
  return decoded.ok ? decoded.event.eventId : null;
}

/** The `used_memory` INFO field, bytes. */
export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? Number.NaN);
}

// The state sections every chaos test runs with (engine YAML and reference spec): one copy.
export { DAY, STATE_REF_SPEC, STATE_YAML, ZONE, stateYaml } from './state-config.js';

/**
 * The `kafka:` section: the broker's minimum session timeout (6 s), so partitions of a member
 * that stopped answering move on quickly.
 */
export function kafkaYaml(brokers: string, topic: string, groupId: string): string {
  return `
kafka:
  brokers: [${brokers}]
  topic: ${topic}
  dlqTopic: ${topic}.dlq
  groupId: ${groupId}
  librdkafka:
    session.timeout.ms: 6000
    heartbeat.interval.ms: 500
`;
}
