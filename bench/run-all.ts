/**
 * `npm run bench`: every benchmark, one after the other, each in its own process (a bench's JIT
 * state and heap must not colour the next one's figures). One private Redis and one Kafka
 * broker are started here and handed to the benches that need them (KAFKA_BROKERS, REDIS_URL),
 * instead of a JVM start per bench; with KAFKA_BROKERS / REDIS_URL already set, those are used.
 *
 *   npm run bench [-- decode,decide,commit,activity-count,naive,consume-api,pipeline]
 * Extra flags after the list are not forwarded; run a single bench (npm run bench:pipeline --
 * --events 100000) for that. Exits non-zero if any bench failed.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { progress } from './support/report.js';
import { benchServices, cleanup, PRIVATE_SERVICES_ENV } from './support/services.js';

const DIR = path.dirname(fileURLToPath(import.meta.url));
/** Cheapest first, so a broken setup fails fast. */
const ALL = ['decode', 'decide', 'commit', 'activity-count', 'naive', 'consume-api', 'pipeline'] as const;

function runBench(name: string, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, path.join(DIR, `${name}.bench.ts`)], { stdio: 'inherit', env });
    child.once('error', () => resolve(1));
    child.once('exit', (code, signal) => resolve(signal ? 1 : (code ?? 1)));
  });
}

async function main(): Promise<number> {
  const wanted = process.argv[2]?.split(',').map((s) => s.trim()) ?? [...ALL];
  const unknown = wanted.filter((w) => !(ALL as readonly string[]).includes(w));
  if (unknown.length > 0) throw new Error(`unknown bench ${unknown.join(', ')}; choose from ${ALL.join(', ')}`);
  const needsKafka = wanted.some((w) => w === 'consume-api' || w === 'pipeline');
  const needsRedis = wanted.some((w) => w === 'commit' || w === 'activity-count' || w === 'naive' || w === 'pipeline');
  let env: NodeJS.ProcessEnv = { ...process.env };
  if (needsKafka || needsRedis) {
    const given = Boolean(process.env.KAFKA_BROKERS) || Boolean(process.env.REDIS_URL);
    const services = await benchServices({ kafka: needsKafka });
    env = { ...env, REDIS_URL: services.redisUrl, ...(needsKafka ? { KAFKA_BROKERS: services.brokers } : {}) };
    if (!given) env[PRIVATE_SERVICES_ENV] = '1';
  }
  const failed: string[] = [];
  for (const name of wanted) {
    progress(`=== ${name} ===`);
    const started = Date.now();
    const code = await runBench(name, env);
    progress(`=== ${name}: ${code === 0 ? 'done' : `FAILED (exit ${code})`} in ${((Date.now() - started) / 1000).toFixed(0)} s ===`);
    if (code !== 0) failed.push(name);
  }
  if (failed.length > 0) progress(`failed: ${failed.join(', ')}`);
  return failed.length === 0 ? 0 : 1;
}

main()
  .then((code) => {
    process.exitCode = code;
  })
  .catch((err: unknown) => {
    process.stderr.write(`[bench] ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
