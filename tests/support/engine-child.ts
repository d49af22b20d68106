/**
 * A Nudge engine in a process of its own, for tests that must kill it without warning
 * (SIGKILL: no `stop()`, no flush, no goodbye to the group) and start it again. The parent side
 * is tests/support/engine-process.ts; run as `node --import tsx engine-child.ts CONFIG_FILE`,
 * the way bin/nudge.js runs the CLI (tsx compiles the TypeScript on load).
 *
 * Environment:
 *   NUDGE_TEST_CLOCK_MS      a fixed wall clock (ms since the epoch); unset = the real clock
 *   NUDGE_TEST_MAX_BATCH     consumer micro-batch size (EngineOptions.maxBatch)
 *   NUDGE_TEST_MAX_IN_FLIGHT batches in flight over all lanes (EngineOptions.maxInFlight)
 *   NUDGE_TEST_RELAY=0       no outbox relay (EngineOptions.relay): touches stay decided, not enqueued
 *   NUDGE_TEST_CRASH_AT      `<point>:<nth>`: SIGKILLs itself the nth time it reaches that point
 *                            (see crashHook below): touches-committed, batch-committed, relay-added
 *
 * stdout carries exactly one line, `{"ready":true,"pid":…,"opsUrl":…}`, once the engine has
 * started; logs (warn and above) go to stderr. SIGTERM or SIGINT stops it gracefully, exit 0.
 * The config is read with no environment overrides, like tests/support/engine-harness.ts does,
 * so a REDIS_URL or NUDGE_* in the test runner's environment cannot redirect the child.
 */
import { loadConfig } from '../../src/config/load.js';
import { Engine, type CrashPoint } from '../../src/engine/engine.js';
import { compileStateSpec } from '../../src/engine/state-spec.js';
import { createLogger } from '../../src/log.js';
import { createMetricsRegistry } from '../../src/metrics/registry.js';

function intFromEnv(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got "${text}"`);
  return n;
}

const CRASH_POINTS: readonly CrashPoint[] = ['touches-committed', 'batch-committed', 'relay-added'];

/**
 * NUDGE_TEST_CRASH_AT=<point>:<nth> as a hook: counts the times the engine reaches `point` and
 * kills the process without warning (SIGKILL, nothing flushed) at the nth, synchronously, so
 * nothing after that point runs. Points: `touches-committed` (state and outbox in Redis, relay
 * not woken), `batch-committed` (Redis commit done, Kafka offset not), `relay-added` (touches in
 * BullMQ, not yet cleared from the outbox). Counted from the moment the child reported ready.
 */
function crashHook(): { point: CrashPoint; arm(): void; reached(point: CrashPoint): void } | null {
  const text = process.env.NUDGE_TEST_CRASH_AT;
  if (text === undefined || text === '') return null;
  const [point, nthText] = text.split(':');
  const nth = Number(nthText);
  if (!CRASH_POINTS.includes(point as CrashPoint) || !Number.isSafeInteger(nth) || nth < 1) {
    throw new Error(`NUDGE_TEST_CRASH_AT must be <point>:<n> with point one of ${CRASH_POINTS.join(', ')} and n >= 1, got "${text}"`);
  }
  let seen = 0;
  let armed = false;
  return {
    point: point as CrashPoint,
    // Counting starts once the child has reported ready: a crash before that would look like a
    // failed start to the parent, which then has no ops URL and no way to tell the two apart.
    arm: () => {
      armed = true;
    },
    reached(p) {
      if (!armed || p !== point || ++seen < nth) return;
      process.stderr.write(`engine-child: crashing at ${p} #${seen}\n`);
      process.kill(process.pid, 'SIGKILL');
    },
  };
}

async function main(): Promise<void> {
  const file = process.argv[2];
  if (file === undefined) throw new Error('usage: engine-child.ts CONFIG_FILE');
  const config = loadConfig({ file, env: {} });
  const fixed = intFromEnv('NUDGE_TEST_CLOCK_MS');
  const maxBatch = intFromEnv('NUDGE_TEST_MAX_BATCH');
  const maxInFlight = intFromEnv('NUDGE_TEST_MAX_IN_FLIGHT');
  const crash = crashHook();
  const engine = new Engine({
    config,
    spec: compileStateSpec(config),
    logger: createLogger({ level: 'warn', name: 'engine-child', destination: process.stderr }),
    registry: createMetricsRegistry(),
    ...(fixed !== undefined ? { clock: () => fixed } : {}),
    ...(maxBatch !== undefined ? { maxBatch } : {}),
    ...(maxInFlight !== undefined ? { maxInFlight } : {}),
    ...(process.env.NUDGE_TEST_RELAY === '0' ? { relay: false } : {}),
    ...(crash !== null ? { onCrashPoint: (p: CrashPoint) => crash.reached(p) } : {}),
  });
  let stopping: Promise<void> | null = null;
  const stop = (): void => {
    stopping ??= engine.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`engine-child: stop failed: ${(err as Error).stack ?? String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await engine.start();
  process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid, opsUrl: engine.opsUrl })}\n`);
  crash?.arm();
}

main().catch((err: unknown) => {
  process.stderr.write(`engine-child: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
