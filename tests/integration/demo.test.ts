import { describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exitOf, freePort, killWhenParentDies, type ProcessExit } from '../../src/dev/redis-server.js';

/**
 * `npm start` = `nudge demo` (DESIGN §2.5, issue 5 item 5), as a newcomer runs it: a child
 * process from bin/nudge.js, stdout a pipe (so the view prints plain frames), no Kafka, and a
 * REDIS_URL where nothing listens — the demo must start its own redis-server, feed synthetic
 * traffic through the real pipeline, serve the ops API while it runs, and at the end (of
 * --duration, or at SIGINT) exit 0 with its private redis-server gone.
 *
 * Exit code at SIGINT: 0. Ctrl-C is how an open-ended demo is meant to end, and it then stops
 * everything cleanly (as `nudge run` does); 130 is left for a second Ctrl-C that quits at once.
 */
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(REPO, 'bin/nudge.js');

interface DemoChild {
  child: ChildProcess;
  exited: Promise<ProcessExit>;
  output: () => string;
  stderr: () => string;
  /** Resolves with the first match of `re` in stdout, or rejects when the child exits first. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

async function startDemo(args: string[], o: { env?: NodeJS.ProcessEnv; stdin?: string } = {}): Promise<DemoChild> {
  // Nothing listens on this port: the demo must find no Redis there.
  const unreachable = `redis://127.0.0.1:${await freePort()}`;
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('NUDGE_')) env[k] = v;
  env.REDIS_URL = unreachable;
  Object.assign(env, o.env);
  const child = spawn(process.execPath, [BIN, 'demo', ...args], { cwd: REPO, env, stdio: [o.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  const exited = exitOf(child);
  if (child.pid !== undefined) void exited.then(killWhenParentDies(child.pid));
  if (o.stdin !== undefined) child.stdin?.end(o.stdin);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stdout?.on('data', (c: string) => (out += c));
  child.stderr?.on('data', (c: string) => (err += c));
  return {
    child,
    exited,
    output: () => out,
    stderr: () => err,
    waitFor: async (re, timeoutMs = 90_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = out.match(re);
        if (m) return m;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`demo exited before printing ${re}:\n${out}\n${err}`);
        if (Date.now() > deadline) throw new Error(`demo did not print ${re} within ${timeoutMs} ms:\n${out}\n${err}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

/** The private redis-server the demo announced: its port and pid. */
async function privateRedis(demo: DemoChild): Promise<{ port: number; pid: number }> {
  const m = await demo.waitFor(/started a private redis-server on redis:\/\/127\.0\.0\.1:(\d+) \(pid (\d+)/);
  return { port: Number(m[1]), pid: Number(m[2]) };
}

/** Polls the ops API until the DAU is above zero; returns the answers it got. */
async function pollOps(opsUrl: string, timeoutMs: number): Promise<{ healthz: { status: number; body: Record<string, unknown> }; dau: number }> {
  const deadline = Date.now() + timeoutMs;
  const healthz = await getJson(`${opsUrl}/healthz`);
  for (;;) {
    const active = await getJson(`${opsUrl}/v1/active?window=dau`);
    expect(active.status).toBe(200);
    const dau = Number(active.body.count);
    if (dau > 0 || Date.now() > deadline) return { healthz, dau };
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Every "events  N/s now · M/s average" of the output, as numbers. */
function rates(output: string): Array<{ now: number; average: number }> {
  return [...output.matchAll(/events\s+([\d,]+)\/s now · ([\d,]+)\/s average/g)].map((m) => ({ now: Number(m[1]!.replace(/,/g, '')), average: Number(m[2]!.replace(/,/g, '')) }));
}

/** The last frame's DAU/WAU/MAU of a metric. */
function lastActivity(output: string, metric: string): { dau: number; wau: number; mau: number } {
  const all = [...output.matchAll(new RegExp(`^  ${metric}\\s+([\\d,]+)\\s+([\\d,]+)\\s+([\\d,]+)\\s*$`, 'gm'))];
  const m = all.at(-1);
  if (m === undefined) throw new Error(`no ${metric} line in:\n${output}`);
  const num = (s: string | undefined) => Number((s ?? '').replace(/,/g, ''));
  return { dau: num(m[1]), wau: num(m[2]), mau: num(m[3]) };
}

const JOURNEYS = ['loan-interest', 'fund-interest', 'transfer-abandoned', 'win-back', 'checkin-3', 'checkin-7', 'salary-autoinvest', 'referral-reward', 'high-value-rm'];

describe('nudge demo (npm start)', () => {
  it('starts its own redis-server, runs synthetic traffic through the pipeline with a view and the ops API, and exits 0 at the end of --duration with its redis gone', async () => {
    // The default 45 days of history, for 3,000 users rather than 10,000 (~70,000 events instead
    // of ~230,000): the same path, a third of the time on a machine busy with the other tests.
    const demo = await startDemo(['--duration', '8s', '--rate', '2000', '--users', '3000', '--seed', '7', '--port', '0']);
    try {
      const redis = await privateRedis(demo);
      const opsUrl = (await demo.waitFor(/ops API: (http:\/\/127\.0\.0\.1:\d+)/))[1]!;
      // While it runs: the ops API answers, and the state fills up (today's DAU once the
      // history replay reaches today, then the live traffic).
      const { healthz, dau } = await pollOps(opsUrl, 240_000);
      expect(healthz).toEqual({ status: 200, body: { status: 'ok' } });
      expect(dau).toBeGreaterThan(0);
      const stages = await getJson(`${opsUrl}/v1/stages`);
      expect(stages.status).toBe(200);
      const stats = await getJson(`${opsUrl}/v1/journeys/loan-interest/stats`);
      expect(stats.status).toBe(200);
      expect(stats.body.journeyId).toBe('loan-interest');

      const exit = await Promise.race([demo.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 150_000))]);
      expect(exit, demo.output() + demo.stderr()).toEqual({ code: 0, signal: null });
      const out = demo.output();

      // The view: the history, then the live run with its progress bar to 100%.
      expect(out).toContain('history: replaying 45 days of past traffic');
      expect(out).toMatch(/live: real-time traffic from [\d,]+ users \(seed 7\) for 8 s/);
      expect(out).toMatch(/\[#{30}\] 100%\s+8 s of 8 s/);
      const r = rates(out);
      expect(r.length).toBeGreaterThanOrEqual(2);
      expect(Math.max(...r.map((x) => x.now))).toBeGreaterThan(0);
      expect(r.at(-1)!.average).toBeGreaterThan(0); // the live run's average, in the last frame
      const active = lastActivity(out, 'active');
      expect(active.dau).toBeGreaterThan(0);
      expect(active.mau).toBeGreaterThanOrEqual(active.wau);
      expect(active.wau).toBeGreaterThanOrEqual(active.dau);
      // 45 days of history: every stage but "new" has people in it, churned included.
      const stageLine = [...out.matchAll(/^stages\s+(.*)$/gm)].at(-1)![1]!;
      for (const stage of ['active', 'dormant', 'churned']) expect(stageLine).toMatch(new RegExp(`${stage} [1-9]`));
      // Touches by journey, suppression and skip reasons, deliveries and the queue.
      for (const j of JOURNEYS) expect(out).toMatch(new RegExp(`^  ${j}\\s+[\\d,]+\\s+[\\d,]+`, 'm'));
      const lastFrame = out.slice(out.lastIndexOf('Nudge demo ·'));
      // entered, send, defer, suppress, holdout, skipped per journey. Which outcome depends on
      // the hour (quiet hours 22:00-08:00 in Asia/Shanghai defer pushes), so count them all.
      const rows = [...lastFrame.matchAll(/^  [a-z0-9-]+((?:\s+[\d,]+){6})$/gm)].map((m) => m[1]!.trim().split(/\s+/).map((x) => Number(x.replace(/,/g, ''))));
      expect(rows.length).toBe(JOURNEYS.length);
      // Whether the 8 s of live traffic decide any touch depends on the hour too: around 03:00 in
      // Asia/Shanghai they decided 0-3 (1 run in 3 none). The stdin test below decides one for sure.
      expect(lastFrame).toMatch(/^suppressed by reason\s+\S/m);
      expect(lastFrame).toMatch(/^triggers skipped\s+.*stale_event [\d,]+/m);
      expect(lastFrame).toMatch(/^deliveries\s+(none yet|[a-z_]+: )/m);
      expect(lastFrame).toMatch(/^touch queue \(sampled\)\s+waiting \d+/m);
      expect(out).toContain('done; traffic:');

      // Stopped cleanly, its private redis-server with it.
      expect(out).toContain(`stopped the private redis-server (pid ${redis.pid})`);
      expect(out.trimEnd().endsWith('nudge demo: stopped.')).toBe(true);
      expect(processGone(redis.pid)).toBe(true);
      expect(await refusesConnections(redis.port)).toBe(true);
      expect(demo.stderr()).toBe('');
    } finally {
      if (demo.child.exitCode === null) demo.child.kill('SIGKILL');
    }
  }, 480_000);

  it('stops cleanly at SIGINT (Ctrl-C) with exit code 0, its private redis-server gone', async () => {
    const demo = await startDemo(['--history', '1d', '--seed', '3', '--port', '0']);
    try {
      const redis = await privateRedis(demo);
      const opsUrl = (await demo.waitFor(/ops API: (http:\/\/127\.0\.0\.1:\d+)/))[1]!;
      const { dau } = await pollOps(opsUrl, 120_000);
      expect(dau).toBeGreaterThan(0);
      await demo.waitFor(/^live: /m, 120_000); // a frame of the live phase: mid-run, not at the end
      demo.child.kill('SIGINT');
      const exit = await Promise.race([demo.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000))]);
      expect(exit, demo.output() + demo.stderr()).toEqual({ code: 0, signal: null });
      const out = demo.output();
      expect(out).toContain('nudge demo: SIGINT: stopping cleanly');
      expect(out).toContain('stopped by a signal; traffic:');
      expect(out).toContain(`stopped the private redis-server (pid ${redis.pid})`);
      expect(processGone(redis.pid)).toBe(true);
      expect(await refusesConnections(redis.port)).toBe(true);
    } finally {
      if (demo.child.exitCode === null) demo.child.kill('SIGKILL');
    }
  }, 300_000);

  it('reads JSON lines from stdin (nudge demo -): good lines are applied, bad ones reported by line number', async () => {
    const now = Date.now();
    const lines = [
      JSON.stringify({ event_id: 'd-1', user_id: 'alice', name: 'login', time_ms: now, channel: 'app' }),
      'not json',
      JSON.stringify({ eventId: 'd-2', userId: 'bob', name: 'payment', timeMs: now, value: 12.5 }),
      JSON.stringify({ event_id: 'd-3', name: 'login', time_ms: now }),
      // A salary credit triggers salary-autoinvest: a touch is decided (sent, deferred or held out).
      JSON.stringify({ event_id: 'd-4', user_id: 'carol', name: 'salary_credited', time_ms: now, value: 5000 }),
    ].join('\n');
    const demo = await startDemo(['-', '--duration', '3s', '--port', '0'], { stdin: `${lines}\n` });
    try {
      const exit = await Promise.race([demo.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000))]);
      expect(exit, demo.output() + demo.stderr()).toEqual({ code: 0, signal: null });
      const out = demo.output();
      expect(out).toContain('stdin line 2: NUDGE_EVENT_BAD_JSON');
      expect(out).toMatch(/stdin line 4: NUDGE_EVENT_MISSING_USER_ID/);
      expect(out).toContain('stdin: 3 events from 5 lines, 2 rejected');
      expect(lastActivity(out, 'active').dau).toBe(3);
      expect(lastActivity(out, 'financial').dau).toBe(1);
      // entered, send, defer, suppress, holdout, skipped: carol entered, and her touch was decided.
      const lastFrame = out.slice(out.lastIndexOf('Nudge demo ·'));
      const salary = /^  salary-autoinvest((?:\s+[\d,]+){6})$/m.exec(lastFrame)?.[1]?.trim().split(/\s+/).map(Number);
      expect(salary?.[0]).toBe(1);
      expect(salary!.slice(1, 5).reduce((a, b) => a + b, 0)).toBe(1);
    } finally {
      if (demo.child.exitCode === null) demo.child.kill('SIGKILL');
    }
  }, 90_000);

  it('without Redis and without redis-server on the PATH, says how to get one and exits 1', async () => {
    const bin = await mkdtemp(join(tmpdir(), 'nudge-demo-path-'));
    try {
      await symlink(process.execPath, join(bin, 'node'));
      const demo = await startDemo(['--duration', '1s'], { env: { PATH: bin } });
      const exit = await demo.exited;
      expect(exit).toEqual({ code: 1, signal: null });
      const err = demo.stderr();
      expect(err).toContain('there is no redis-server on the PATH');
      expect(err).toContain('apt-get install redis-server');
      expect(err).toContain('brew install redis');
      expect(err).toContain('REDIS_URL=');
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  }, 60_000);
});
