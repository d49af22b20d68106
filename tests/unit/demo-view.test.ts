import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { loadConfig } from '../../src/config/load.js';
import { DEMO_NAMESPACE, DEMO_QUEUE, demoConfig } from '../../src/cli/demo.js';
import { FramePrinter, renderFrame, type DemoSnapshot } from '../../src/cli/demo-view.js';

const AT = Date.UTC(2026, 10, 23, 13, 28, 49); // 21:28:49 in Asia/Shanghai

function snapshot(over: Partial<DemoSnapshot> = {}): DemoSnapshot {
  const journey = (id: string, entered: number) => ({
    id,
    entered,
    decisions: { send: entered - 1, holdout: 1 },
    reasons: { sent: entered - 1, holdout: 1, min_gap: 2 },
    skipped: { stale_event: 100, reentry_cooldown: 3 },
  });
  return {
    atMs: AT,
    reportingTimeZone: 'Asia/Shanghai',
    header: 'ops API http://127.0.0.1:8080 · Ctrl-C stops',
    phase: 'live: real-time traffic',
    progress: { fraction: 0.5, label: '4 s of 8 s' },
    events: { perSecond: 2013.4, averagePerSecond: 1987, read: 412_345, applied: 410_002, late: 12, duplicates: 240, clamped: 0, deadLetters: 3, lag: 120 },
    day: '2026-11-23',
    activity: [
      { metric: 'active', dau: 4512, wau: 7802, mau: 9120 },
      { metric: 'financial', dau: 1203, wau: 3004, mau: 5230 },
    ],
    newUsers: 57,
    stages: { new: 120, active: 6010, dormant: 1200, churned: 550, reactivated: 14 },
    journeys: ['high-value-rm', 'transfer-abandoned', 'salary-autoinvest', 'win-back', 'referral-reward', 'loan-interest', 'fund-interest', 'checkin-7', 'checkin-3'].map((id, i) => journey(id, 10 + i)),
    deliveries: { push: { sent: 80, retry: 2 }, sms: { sent: 0 } },
    jobs: { waiting: 1, delayed: 300, active: 0, failed: 0, completed: 80 },
    outbox: 4,
    footer: ['try        curl http://127.0.0.1:8080/v1/active?window=mau', 'redis      private redis-server'],
    ...over,
  };
}

describe('demo view', () => {
  it('shows rates, activity, stages, journeys with suppression and skip reasons, deliveries and the queue', () => {
    const text = renderFrame(snapshot()).join('\n');
    expect(text).toContain('2026-11-23 21:28:49 Asia/Shanghai');
    expect(text).toMatch(/events\s+2,013\/s now · 1,987\/s average · 412,345 read · 410,002 applied/);
    expect(text).toContain('3 dead letters · 120 queued');
    expect(text).toMatch(/\[#{15}\.{15}\]\s+50%\s+4 s of 8 s/);
    expect(text).toMatch(/active\s+4,512\s+7,802\s+9,120/);
    expect(text).toMatch(/financial\s+1,203\s+3,004\s+5,230/);
    expect(text).toContain('new users today: 57');
    expect(text).toContain('stages     new 120 · active 6,010 · dormant 1,200 · churned 550 · reactivated 14');
    expect(text).toMatch(/loan-interest\s+15\s+14\s+0\s+0\s+1\s+103/);
    // Outcome reasons (sent, holdout) are columns already; the rest are suppressions, summed.
    expect(text).toContain('suppressed by reason   min_gap 18');
    expect(text).toMatch(/triggers skipped\s+stale_event 900 · reentry_cooldown 27 \(stale_\*/);
    expect(text).toContain('deliveries             push: sent 80 retry 2');
    expect(text).not.toContain('sms:'); // a channel with nothing yet is left out
    expect(text).toContain('touch queue (sampled)  waiting 1 · delayed 300 · active 0 · failed 0 · completed 80 · outbox 4');
    expect(text).toContain('try        curl http://127.0.0.1:8080/v1/active?window=mau');
  });

  it('fits a 24-line terminal with the shipped playbook (9 journeys) and cuts lines to its width', () => {
    const lines = renderFrame(snapshot(), { columns: 80 });
    expect(lines.length).toBeLessThanOrEqual(24);
    expect(lines.every((l) => l.length <= 80)).toBe(true);
    expect(lines.some((l) => l.endsWith('…'))).toBe(true);
  });

  it('leaves the progress bar out of an open-ended run and says "none" where nothing happened', () => {
    const text = renderFrame(snapshot({ journeys: [], deliveries: {}, progress: undefined as never })).join('\n');
    expect(text).not.toContain('%');
    expect(text).toContain('suppressed by reason   none');
    expect(text).toContain('deliveries             none yet');
  });

  it('prints plain frames at most every interval on a pipe, and the last one always', () => {
    const out = new PassThrough();
    let written = '';
    out.on('data', (c: Buffer) => (written += c.toString()));
    let now = 0;
    const printer = new FramePrinter(out as unknown as NodeJS.WritableStream, 5_000, () => now);
    printer.line('intro');
    printer.frame(snapshot());
    now = 1_000;
    printer.frame(snapshot());
    now = 5_000;
    printer.frame(snapshot());
    printer.finish(snapshot({ phase: 'done; the end' }));
    expect(written.startsWith('intro\n')).toBe(true);
    expect(written.split('Nudge demo ·').length - 1).toBe(3);
    expect(written).toContain('done; the end');
    expect(written).not.toContain('\x1b');
  });

  it('draws in the alternate screen on a terminal and gives the terminal back with the last frame and the lines logged meanwhile', () => {
    const out = new PassThrough() as PassThrough & { isTTY: boolean; columns: number; rows: number };
    out.isTTY = true;
    out.columns = 100;
    out.rows = 10;
    let written = '';
    out.on('data', (c: Buffer) => (written += c.toString()));
    const printer = new FramePrinter(out as unknown as NodeJS.WritableStream);
    printer.frame(snapshot());
    printer.line('SIGINT: stopping');
    printer.frame(snapshot());
    const whileLive = written;
    printer.finish(snapshot({ phase: 'done' }));
    expect(whileLive.startsWith('\x1b[?1049h')).toBe(true);
    // Cut to the window: 10 rows per frame.
    const frames = whileLive.split('\x1b[H').slice(1);
    expect(frames.every((f) => f.split('\n').length <= 10)).toBe(true);
    const after = written.slice(whileLive.length);
    expect(after.startsWith('\x1b[?25h\x1b[?1049l')).toBe(true);
    expect(after).toContain('done');
    expect(after.trimEnd().endsWith('SIGINT: stopping')).toBe(true);
    // A frame that was still being read when the view ended is not drawn (no alternate screen again).
    const done = written;
    printer.frame(snapshot());
    expect(written).toBe(done);
  });
});

describe('demo config', () => {
  const base = loadConfig({ file: 'config/nudge.yaml', env: {} });

  it('keeps the playbook, moves the demo to its own namespace and queue, and sends webhooks to the log adapter', () => {
    const c = demoConfig(base, { url: 'redis://127.0.0.1:7777', server: {} }, 0);
    expect(c.journeys.map((j) => j.id)).toEqual(base.journeys.map((j) => j.id));
    expect(c.redis.url).toBe('redis://127.0.0.1:7777');
    expect(c.redis.keyPrefix).toBe(DEMO_NAMESPACE);
    expect(c.touches.queue).toBe(DEMO_QUEUE);
    expect(c.http.port).toBe(0);
    expect(base.touches.channels.rm_task?.webhook).toBeDefined();
    expect(c.touches.channels.rm_task).toEqual({ adapter: 'log', concurrency: base.touches.channels.rm_task?.concurrency, rateLimit: undefined });
    expect(c.touches.channels.push).toEqual(base.touches.channels.push);
  });

  it('uses the configured credentials with the configured Redis only, never with its private one', () => {
    const withAuth = { ...base, redis: { ...base.redis, username: 'nudge', password: 'pw-for-the-real-one' } };
    expect(demoConfig(withAuth, { url: base.redis.url, server: null }, 8080).redis.password).toBe('pw-for-the-real-one');
    const priv = demoConfig(withAuth, { url: 'redis://127.0.0.1:7777', server: {} }, 8080).redis;
    expect(priv.password).toBeUndefined();
    expect(priv.username).toBeUndefined();
  });
});
