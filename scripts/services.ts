/**
 * `npm run services`: a private Redis and Kafka broker in the foreground for development, without
 * Docker. Prints the environment to paste into another terminal; Ctrl-C stops both.
 *
 *   npm run services -- [--redis-port 6380] [--kafka-port 9092] [--data DIR]
 *
 * Without --data both start empty each time (temp dirs, removed on exit). With --data, Redis
 * (append-only file on) and Kafka (topics, offsets) keep their state in DIR across restarts.
 */
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { describeError, ErrorCodes, NudgeError } from '../src/errors.js';
import { freePort, startRedisServer } from '../src/dev/redis-server.js';
import { startKafkaBroker } from './services/kafka-broker.js';

const DEFAULT_REDIS_PORT = 6380; // not 6379, so a system Redis can keep running beside it
const DEFAULT_KAFKA_PORT = 9092;
const USAGE = 'usage: npm run services -- [--redis-port N] [--kafka-port N] [--data DIR]';

interface Flags {
  redisPort?: number;
  kafkaPort?: number;
  dataDir?: string;
}

const say = (msg: string) => process.stdout.write(`${msg}\n`);

async function main(): Promise<number> {
  const flags = parseFlags(process.argv.slice(2));
  if (flags === 'help') {
    say(USAGE);
    return 0;
  }
  // Listen from the start: a Ctrl-C while the JVM boots must still stop both cleanly once they are
  // up. Keep listening after the first one: npm and tsx relay the terminal's SIGINT to us again,
  // and a signal with no listener left would kill us before the services are stopped.
  let stopSignal: string | undefined;
  const stopRequested = new Promise<string>((resolveStop) => {
    const onSignal = (name: NodeJS.Signals) => {
      if (stopSignal === undefined) resolveStop(name);
      else say(`${name}: still stopping (Kafka's controlled shutdown takes a few seconds)...`);
      stopSignal ??= name;
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  const [redisPort, kafkaPort] = await Promise.all([
    choosePort('Redis', flags.redisPort, DEFAULT_REDIS_PORT),
    choosePort('Kafka', flags.kafkaPort, DEFAULT_KAFKA_PORT),
  ]);
  // The conventional controller port; it only matters that it stays the same across --data restarts.
  const controllerPort = (await isFree(kafkaPort + 1)) ? kafkaPort + 1 : await freePort();
  const data = flags.dataDir;
  if (data === undefined) say('starting Redis and Kafka with fresh data (pass --data DIR to keep it)...');
  else say(`starting Redis and Kafka with data in ${data}...`);

  const started = await Promise.allSettled([
    startRedisServer({
      port: redisPort,
      log: say,
      ...(data === undefined ? {} : { dir: join(data, 'redis'), appendonly: true }),
    }),
    startKafkaBroker({
      port: kafkaPort,
      controllerPort,
      log: say,
      ...(data === undefined ? {} : { dataDir: join(data, 'kafka') }),
    }),
  ]);
  const [redisResult, kafkaResult] = started;
  if (redisResult.status === 'rejected' || kafkaResult.status === 'rejected') {
    await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    for (const r of started) if (r.status === 'rejected') say(describeError(r.reason));
    return 1;
  }
  const redis = redisResult.value;
  const kafka = kafkaResult.value;
  if (stopSignal !== undefined) {
    say(`${stopSignal} while starting: stopping...`);
    await Promise.all([redis.stop(), kafka.stop()]);
    return 0;
  }

  say(`redis-server  ${redis.url}  (pid ${redis.pid}, dir ${redis.dir})`);
  say(`kafka broker  ${kafka.brokers}  (pid ${kafka.pid}, data ${kafka.dataDir}, warnings in ${kafka.logFile})`);
  say('\nPaste into the shell that runs Nudge or the tests:\n');
  say(`export REDIS_URL=${redis.url} KAFKA_BROKERS=${kafka.brokers} NUDGE_KAFKA_BROKERS=${kafka.brokers}`);
  say('\nCtrl-C stops both.');

  const reason = await Promise.race([
    stopRequested,
    redis.exited.then((exit) => ({ died: 'redis-server', exit })),
    kafka.exited.then((exit) => ({ died: 'kafka broker', exit })),
  ]);
  say(typeof reason === 'string' ? `\n${reason}: stopping...` : `\n${reason.died} stopped by itself; stopping the other...`);
  await Promise.all([redis.stop(), kafka.stop()]);
  say('stopped.');
  return typeof reason === 'string' ? 0 : 1;
}

function parseFlags(argv: string[]): Flags | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        'redis-port': { type: 'string' },
        'kafka-port': { type: 'string' },
        data: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw usageError(`${(err as Error).message}\n${USAGE}`);
  }
  if (values.help === true) return 'help';
  const flags: Flags = {};
  if (values['redis-port'] !== undefined) flags.redisPort = portFlag('--redis-port', values['redis-port']);
  if (values['kafka-port'] !== undefined) flags.kafkaPort = portFlag('--kafka-port', values['kafka-port']);
  if (values.data !== undefined) flags.dataDir = resolve(values.data);
  return flags;
}

function portFlag(name: string, raw: string): number {
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw usageError(`${name} must be a port number from 1 to 65535, got "${raw}"`);
  }
  return port;
}

/**
 * A port the user asked for must be free (silently moving it would break their config); the
 * default just falls back to a free one, and the printed exports show which.
 */
async function choosePort(service: string, asked: number | undefined, fallback: number): Promise<number> {
  if (asked !== undefined) {
    if (await isFree(asked)) return asked;
    throw usageError(`port ${asked} for ${service} is taken: pass another or omit the flag to get a free one`);
  }
  if (await isFree(fallback)) return fallback;
  const port = await freePort();
  say(`port ${fallback} is taken (another ${service}?); using ${port} for ${service} instead`);
  return port;
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once('error', () => resolvePort(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort(true)));
  });
}

function usageError(message: string): NudgeError {
  return new NudgeError(ErrorCodes.CLI_USAGE, message);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${describeError(err)}\n`);
    process.exit(err instanceof NudgeError && err.code === ErrorCodes.CLI_USAGE ? 2 : 1);
  },
);
