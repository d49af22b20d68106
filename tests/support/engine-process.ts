import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describeExit, exitOf, killWhenParentDies, terminate, type ProcessExit } from '../../src/dev/redis-server.js';

const CHILD = fileURLToPath(new URL('./engine-child.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const STDERR_TAIL = 60;

export interface EngineProcessOptions {
  /** A config file (tests/support/engine-harness.ts `testConfig` writes one). */
  configFile: string;
  /** The child's fixed wall clock; unset = the real clock. */
  clockMs?: number;
  maxBatch?: number;
  maxInFlight?: number;
  /** false: the child runs no outbox relay (decided touches stay in the outboxes). */
  relay?: boolean;
  /**
   * `<point>:<nth>`: the child SIGKILLs itself the nth time it reaches that point
   * (tests/support/engine-child.ts: touches-committed, batch-committed, relay-added).
   */
  crashAt?: string;
  /** How long the child may take to start (tsx compile, Redis, group join). @default 60_000 */
  readyTimeoutMs?: number;
}

export interface EngineProcess {
  pid: number;
  /** The child's ops API (`/metrics`, `/v1/...`). */
  opsUrl: string;
  exited: Promise<ProcessExit>;
  /** The last lines the child wrote to stderr, for failure messages. */
  stderrTail(): string;
  /** SIGKILL: no graceful stop, nothing flushed; resolves when the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (graceful stop), escalating to SIGKILL after 30 s; resolves on exit. */
  stop(): Promise<void>;
}

/**
 * Starts tests/support/engine-child.ts in a new Node process (`node --import tsx`, as
 * bin/nudge.js loads the sources) and resolves once it reports the engine started. The child
 * cannot outlive the test process: a guard kills it if this process dies first.
 */
export async function startEngineProcess(o: EngineProcessOptions): Promise<EngineProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['NUDGE_TEST_CLOCK_MS', 'NUDGE_TEST_MAX_BATCH', 'NUDGE_TEST_MAX_IN_FLIGHT', 'NUDGE_TEST_RELAY', 'NUDGE_TEST_CRASH_AT']) delete env[k];
  if (o.crashAt !== undefined) env.NUDGE_TEST_CRASH_AT = o.crashAt;
  if (o.relay === false) env.NUDGE_TEST_RELAY = '0';
  if (o.clockMs !== undefined) env.NUDGE_TEST_CLOCK_MS = String(o.clockMs);
  if (o.maxBatch !== undefined) env.NUDGE_TEST_MAX_BATCH = String(o.maxBatch);
  if (o.maxInFlight !== undefined) env.NUDGE_TEST_MAX_IN_FLIGHT = String(o.maxInFlight);
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, o.configFile], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = exitOf(child);
  if (child.pid !== undefined) void exited.then(killWhenParentDies(child.pid));
  const tail: string[] = [];
  let partial = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    tail.push(...lines);
    if (tail.length > STDERR_TAIL) tail.splice(0, tail.length - STDERR_TAIL);
  });
  const stderrTail = (): string => [...tail, partial].join('\n');

  const timeoutMs = o.readyTimeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  const ready = await Promise.race([
    new Promise<{ pid: number; opsUrl: string }>((resolve) => {
      let out = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) => {
        out += chunk;
        const nl = out.indexOf('\n');
        if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)) as { pid: number; opsUrl: string });
      });
    }),
    exited.then((exit) => new Error(`engine child exited before it was ready (${describeExit(exit)}):\n${stderrTail()}`)),
    new Promise<Error>((resolve) => {
      timer = setTimeout(() => resolve(new Error(`engine child not ready within ${timeoutMs} ms:\n${stderrTail()}`)), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
  if (ready instanceof Error) {
    child.kill('SIGKILL');
    await exited;
    throw ready;
  }
  return {
    pid: ready.pid,
    opsUrl: ready.opsUrl,
    exited,
    stderrTail,
    kill: () => terminate(child, exited, 'SIGKILL', 10_000),
    stop: () => terminate(child, exited, 'SIGTERM', 30_000),
  };
}

/** One sample of a Prometheus text exposition: the value of `name` (no labels), or of `name{labels}`. */
export function metricValue(text: string, name: string, labels = ''): number {
  const wanted = labels === '' ? name : `${name}{${labels}}`;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    if (line.slice(0, space) === wanted) return Number(line.slice(space + 1));
  }
  return 0;
}

/** Reads one metric of a running engine process from its ops API. */
export async function readMetric(opsUrl: string, name: string, labels = ''): Promise<number> {
  const res = await fetch(`${opsUrl}/metrics`);
  if (res.status !== 200) throw new Error(`GET ${opsUrl}/metrics answered ${res.status}`);
  return metricValue(await res.text(), name, labels);
}
