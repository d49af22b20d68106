import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, NudgeError } from '../errors.js';

export interface RedisServerOptions {
  /** TCP port on 127.0.0.1. @default a free port picked by the OS */
  port?: number;
  /** Working directory for AOF/RDB files, created if missing. @default a new temp dir, removed by `stop()` */
  dir?: string;
  /** Appended after the built-in arguments, so they win (`['--maxmemory', '64mb']`). @default [] */
  extraArgs?: string[];
  /** Turn on the append-only file, for tests that kill Redis and expect data back. @default false */
  appendonly?: boolean;
  /** Receives one line per notable event (unexpected exit). @default discard */
  log?: (msg: string) => void;
  /** How long to wait for "Ready to accept connections". @default 15_000 */
  readyTimeoutMs?: number;
}

export interface RedisServerHandle {
  url: string;
  port: number;
  pid: number;
  dir: string;
  /** Resolves when the process exits, for whatever reason. */
  exited: Promise<ProcessExit>;
  /** Graceful: SIGTERM (Redis flushes the AOF if on), then waits for exit. Removes a temp dir it made. */
  stop(): Promise<void>;
  /** Simulates a crash: SIGKILL by default, waits for exit, and leaves `dir` for a restart. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const READY_LINE = 'Ready to accept connections';
const STOP_GRACE_MS = 10_000;
const TAIL_LINES = 40;

/**
 * Starts a private `redis-server` on 127.0.0.1 for tests, `npm run services` and `nudge demo`.
 * Persistence is off unless asked for, and `maxmemory-policy noeviction` because Nudge refuses to
 * run on a Redis that may silently drop its state (NUDGE_REDIS_UNSAFE). Restarting on the same
 * `port` and `dir` with `appendonly: true` reloads the data, which is how crash tests work.
 */
export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RedisServerHandle> {
  const port = opts.port ?? (await freePort());
  const ownsDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'nudge-redis-')));
  await mkdir(dir, { recursive: true });
  const log = opts.log ?? (() => {});
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', opts.appendonly === true ? 'yes' : 'no',
    '--dir', dir,
    '--maxmemory-policy', 'noeviction',
    ...(opts.extraArgs ?? []),
  ];

  // Own process group: a terminal Ctrl-C reaches only the host process, which then stops us in
  // order (`stop()`); if the host dies instead, the guard below still kills us.
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let spawnError: Error | undefined;
  child.once('error', (err) => {
    spawnError = err;
  });
  const tail: string[] = [];
  const exited = exitOf(child);
  // From the start, not from readiness: a host that dies while Redis loads must not leave it behind.
  const release = child.pid === undefined ? () => {} : killWhenParentDies(child.pid);
  void exited.then(release);
  // `exit` can come before the last output is read; an early-exit message needs that output
  // ("Address already in use"), so readiness races `close`, which waits for stdout and stderr.
  const ended = new Promise<ProcessExit>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
    void exited.then((exit) => spawnError !== undefined && resolve(exit));
  });
  const ready = new Promise<void>((resolve) => {
    // Keep reading after readiness: an unread pipe fills up and blocks Redis on its next log line.
    forEachLine(child, (line) => {
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
      if (line.includes(READY_LINE)) resolve();
    });
  });

  const fail = async (problem: string, cause?: unknown): Promise<never> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    if (ownsDir) await rm(dir, { recursive: true, force: true });
    throw new NudgeError(ErrorCodes.SERVICE_START, problem, { context: { port, dir }, cause });
  };

  const timeoutMs = opts.readyTimeoutMs ?? 15_000;
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    ready.then(() => 'ready' as const),
    ended,
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));

  if (spawnError !== undefined) {
    const missing = (spawnError as NodeJS.ErrnoException).code === 'ENOENT';
    return fail(
      missing
        ? 'redis-server not found on PATH: install it (Debian: apt-get install redis-server) or set ' +
            'REDIS_URL to an existing server'
        : `could not run redis-server: ${spawnError.message}`,
      spawnError,
    );
  }
  if (outcome === 'timeout') {
    return fail(
      `redis-server on port ${port} did not print "${READY_LINE}" within ${timeoutMs} ms. ` +
        `Its last output:\n${tail.join('\n')}`,
    );
  }
  if (outcome !== 'ready') {
    return fail(
      `redis-server on port ${port} exited before it was ready (${describeExit(outcome)}). ` +
        `If the port is taken, pass another or let one be picked. Its last output:\n${tail.join('\n')}`,
    );
  }

  const pid = child.pid as number;
  let stopping = false;
  void exited.then((exit) => {
    if (!stopping) log(`redis-server on port ${port} (pid ${pid}) exited unexpectedly (${describeExit(exit)})`);
  });

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid,
    dir,
    exited,
    async stop() {
      stopping = true;
      await terminate(child, exited, 'SIGTERM', STOP_GRACE_MS);
      if (ownsDir) await rm(dir, { recursive: true, force: true });
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      stopping = true;
      await terminate(child, exited, signal, STOP_GRACE_MS);
    },
  };
}

/**
 * A port that was free a moment ago. Another process could take it before the server binds it;
 * the server then fails to start with a clear message, which is rare enough for tests.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not read the port the OS picked'));
      });
    });
  });
}

/**
 * Makes sure a service process does not outlive this Node process, whatever ends it: a normal
 * exit without `stop()`, a signal, a crash or even SIGKILL (where no exit handler runs). A tiny
 * `sh` waits on a pipe from us; the kernel closes the pipe when we die, `read` returns, and the
 * guard kills the service. Listening for SIGINT/SIGTERM instead would change how the host process
 * (vitest, `npm run services`) reacts to them and would still miss SIGKILL.
 *
 * Returns the function that dismisses the guard; call it once the service has exited, so a
 * recycled pid can never be killed by mistake.
 */
export function killWhenParentDies(pid: number): () => void {
  // `kill 0` or a negative pid would hit a whole process group, ours included.
  if (!Number.isInteger(pid) || pid <= 0) throw new RangeError(`not a process id: ${pid}`);
  const guard = spawn('sh', ['-c', 'read _ignored; kill -KILL "$1" 2>/dev/null', 'nudge-guard', String(pid)], {
    stdio: ['pipe', 'ignore', 'ignore'],
    // Out of the terminal's process group, so Ctrl-C cannot kill the guard before the service.
    detached: true,
  });
  // Neither the guard nor its idle pipe may keep this process alive.
  guard.unref();
  guard.on('error', () => {}); // no `sh`: the service just loses this safety net
  return () => {
    if (guard.exitCode === null && guard.signalCode === null) guard.kill('SIGTERM');
  };
}

/** Sends `signal`, waits for exit, and escalates to SIGKILL after `graceMs`. */
export async function terminate(
  child: ChildProcess,
  exited: Promise<ProcessExit>,
  signal: NodeJS.Signals,
  graceMs: number,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const escalate = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, graceMs);
  });
  await Promise.race([exited, escalate]);
  clearTimeout(timer);
  await exited;
}

/** Resolves on exit. `exit` can fire before the stdio pipes are drained, which is fine here. */
export function exitOf(child: ChildProcess): Promise<ProcessExit> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // A spawn failure (ENOENT) emits `error` and never `exit`.
    child.once('error', () => resolve({ code: null, signal: null }));
  });
}

export function describeExit(exit: ProcessExit): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `exit code ${exit.code ?? 'unknown'}`;
}

function forEachLine(child: ChildProcess, onLine: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    let partial = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    });
  }
}
