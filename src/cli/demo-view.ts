import type { Registry } from 'prom-client';
import type { Engine } from '../engine/engine.js';
import type { MemoryDeadLetters, InProcessSource } from '../sources/in-process-source.js';
import { journeyStats } from '../state/journey-stats.js';
import { STAGES } from '../state/lifecycle.js';
import { dayNumber, formatDay } from '../time/calendar.js';

/** Everything one frame of the demo's terminal view shows. */
export interface DemoSnapshot {
  atMs: number;
  reportingTimeZone: string;
  /** After the clock on the first line: where the ops API is, how to stop. */
  header: string;
  /** What the demo is doing: one line. */
  phase: string;
  /** A progress bar: the history replay, or a timed run (`--duration`). */
  progress?: { fraction: number; label: string };
  events: {
    /** Events read per second since the previous frame, and since the live traffic began. */
    perSecond: number;
    averagePerSecond: number;
    read: number;
    applied: number;
    late: number;
    duplicates: number;
    clamped: number;
    deadLetters: number;
    /** Produced and not yet committed. */
    lag: number;
  };
  day: string;
  activity: Array<{ metric: string; dau: number; wau: number; mau: number }>;
  newUsers: number;
  stages: Record<string, number>;
  journeys: JourneyRow[];
  deliveries: Record<string, Record<string, number>>;
  jobs: Record<string, number>;
  outbox: number;
  footer: string[];
}

export interface JourneyRow {
  id: string;
  entered: number;
  /** Touch decisions by outcome: send, defer, suppress, holdout. */
  decisions: Record<string, number>;
  /** Decision reasons (sent, quiet_hours_deferred, cap_channel, ...). */
  reasons: Record<string, number>;
  /** Triggers that did not enter, by reason. */
  skipped: Record<string, number>;
}

const SUPPRESS_REASONS_SHOWN_AS_OUTCOMES = new Set(['sent', 'quiet_hours_deferred', 'holdout', 'global_holdout']);

/**
 * Reads what the view shows from where the ops API reads it: the same queries as
 * `GET /v1/active`, `/v1/stages` and `/v1/journeys/{id}/stats`, and the engine's metrics.
 * A few pipelined Redis reads per frame, once a second: nothing the pipeline notices.
 */
export class DemoStats {
  private last: { atMs: number; read: number };
  /** Where the average rate is taken from: the engine's start, then `markLive()`. */
  private liveSince: { atMs: number; read: number };

  constructor(
    private readonly o: {
      engine: Engine;
      registry: Registry;
      source: InProcessSource;
      deadLetters: MemoryDeadLetters;
      namespace: string;
      topic: string;
      metrics: string[];
      journeys: string[];
      reportingTimeZone: string;
      clock?: () => number;
    },
  ) {
    // The engine has just started: its counters are at zero now, so the first frame has a rate.
    this.last = { atMs: (o.clock ?? Date.now)(), read: 0 };
    this.liveSince = this.last;
  }

  /** The average rate is taken from now on (the start of the live traffic). */
  async markLive(): Promise<void> {
    const atMs = (this.o.clock ?? Date.now)();
    this.liveSince = { atMs, read: await counterValue(this.o.engine.metrics.eventsConsumed.get()) };
  }

  async snapshot(view: { header: string; phase: string; progress?: DemoSnapshot['progress']; footer: string[] }): Promise<DemoSnapshot> {
    const { engine, registry } = this.o;
    const atMs = (this.o.clock ?? Date.now)();
    const m = engine.metrics;
    // Counters first, together, so the numbers of one frame agree with each other.
    const [read, applied, late, duplicates, clamped] = await Promise.all(
      [m.eventsConsumed, m.eventsApplied, m.eventsLate, m.eventsDuplicate, m.eventsClamped].map((c) => counterValue(c.get())),
    ) as [number, number, number, number, number];
    const lag = this.o.source.lag();
    const deadLetters = this.o.deadLetters.total;
    const perSecond = atMs > this.last.atMs ? ((read - this.last.read) * 1000) / (atMs - this.last.atMs) : 0;
    const averagePerSecond = atMs > this.liveSince.atMs ? ((read - this.liveSince.read) * 1000) / (atMs - this.liveSince.atMs) : 0;
    this.last = { atMs, read };
    const day = dayNumber(atMs, this.o.reportingTimeZone);
    const q = engine.queries;
    const activity = await Promise.all(
      this.o.metrics.map(async (metric) => ({
        metric,
        dau: (await q.active(metric, 'dau', day)).count,
        wau: (await q.active(metric, 'wau', day)).count,
        mau: (await q.active(metric, 'mau', day)).count,
      })),
    );
    const journeys = await Promise.all(
      this.o.journeys.map(async (id): Promise<JourneyRow> => {
        const s = await journeyStats(q, id);
        const entered = Object.values(s.variants).reduce((a, g) => a + g.users, 0) + s.holdout.users + s.globalHoldout.users;
        return { id, entered, decisions: s.decisions, reasons: s.reasons, skipped: s.skipped };
      }),
    );
    return {
      atMs,
      reportingTimeZone: this.o.reportingTimeZone,
      header: view.header,
      phase: view.phase,
      ...(view.progress !== undefined ? { progress: view.progress } : {}),
      events: {
        perSecond,
        averagePerSecond,
        read,
        applied,
        late,
        duplicates,
        clamped,
        deadLetters,
        lag,
      },
      day: formatDay(day),
      activity,
      newUsers: await q.newUsers(day),
      stages: await q.stageCounts(),
      journeys,
      deliveries: await byLabels(registry, 'nudge_touch_deliveries_total', 'channel', 'result'),
      jobs: await byLabel(registry, 'nudge_touch_jobs', 'state'),
      outbox: (await valuesOf(registry, 'nudge_touch_outbox_depth')).reduce((a, v) => a + v.value, 0),
      footer: view.footer,
    };
  }
}

type MetricValues = { values: Array<{ value: number; labels: Partial<Record<string, string | number>> }> };

async function counterValue(metric: Promise<MetricValues> | MetricValues): Promise<number> {
  return (await metric).values.reduce((a, v) => a + v.value, 0);
}

async function valuesOf(registry: Registry, name: string): Promise<MetricValues['values']> {
  const metric = registry.getSingleMetric(name);
  return metric === undefined ? [] : (await metric.get()).values;
}

/** A metric's values summed by one label. */
async function byLabel(registry: Registry, name: string, label: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of await valuesOf(registry, name)) {
    const key = String(v.labels[label] ?? '');
    out[key] = (out[key] ?? 0) + v.value;
  }
  return out;
}

/** A metric's values by two labels, outer then inner. */
async function byLabels(registry: Registry, name: string, outer: string, inner: string): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  for (const v of await valuesOf(registry, name)) {
    const row = (out[String(v.labels[outer] ?? '')] ??= {});
    const key = String(v.labels[inner] ?? '');
    row[key] = (row[key] ?? 0) + v.value;
  }
  return out;
}

export interface RenderOptions {
  /** Terminal width: longer lines are cut so the frame can be redrawn in place. */
  columns?: number;
}

/**
 * One frame of the view as lines of plain text (no colours: they would break logs and tests).
 * 24 lines with the shipped playbook, so it fits a default terminal.
 */
export function renderFrame(s: DemoSnapshot, o: RenderOptions = {}): string[] {
  const lines: string[] = [];
  const push = (line: string): void => {
    lines.push(o.columns !== undefined && line.length > o.columns ? `${line.slice(0, Math.max(0, o.columns - 1))}…` : line);
  };
  push(`Nudge demo · ${clockText(s.atMs, s.reportingTimeZone)} ${s.reportingTimeZone} · ${s.header}`);
  push(s.phase);
  if (s.progress !== undefined) push(`${bar(s.progress.fraction)}  ${s.progress.label}`);
  const e = s.events;
  push(
    `events     ${n(Math.round(e.perSecond))}/s now · ${n(Math.round(e.averagePerSecond))}/s average · ${n(e.read)} read · ${n(e.applied)} applied · ` +
      `${n(e.late)} late · ${n(e.duplicates)} duplicates · ${n(e.clamped)} clamped · ${n(e.deadLetters)} dead letters · ${n(e.lag)} queued`,
  );
  push(`activity   ${`today ${s.day}`.padEnd(20)}${'DAU'.padStart(9)}${'WAU'.padStart(9)}${'MAU'.padStart(9)}   new users today: ${n(s.newUsers)}`);
  for (const a of s.activity) push(`  ${a.metric.padEnd(29)}${n(a.dau).padStart(9)}${n(a.wau).padStart(9)}${n(a.mau).padStart(9)}`);
  push(`stages     ${STAGES.map((st) => `${st} ${n(s.stages[st] ?? 0)}`).join(' · ')}`);
  push(`journeys${' '.repeat(23)}${['entered', 'send', 'defer', 'suppress', 'holdout', 'skipped'].map((h) => h.padStart(9)).join('')}`);
  const suppressed: Record<string, number> = {};
  const skipped: Record<string, number> = {};
  for (const j of s.journeys) {
    const d = j.decisions;
    const skips = Object.values(j.skipped).reduce((a, b) => a + b, 0);
    push(`  ${j.id.padEnd(29)}${[j.entered, d.send ?? 0, d.defer ?? 0, d.suppress ?? 0, d.holdout ?? 0, skips].map((x) => n(x).padStart(9)).join('')}`);
    for (const [r, c] of Object.entries(j.reasons)) if (!SUPPRESS_REASONS_SHOWN_AS_OUTCOMES.has(r)) suppressed[r] = (suppressed[r] ?? 0) + c;
    for (const [r, c] of Object.entries(j.skipped)) skipped[r] = (skipped[r] ?? 0) + c;
  }
  push(`suppressed by reason   ${listed(suppressed)}`);
  const stale = (skipped.stale_event ?? 0) + (skipped.stale_timer ?? 0) > 0;
  push(`triggers skipped       ${listed(skipped)}${stale ? ' (stale_*: older than time.maxTriggerAge by the wall clock, as the replayed history is: state, no touch)' : ''}`);
  const delivered = Object.entries(s.deliveries)
    .filter(([, results]) => Object.values(results).some((c) => c > 0))
    .map(([channel, results]) => `${channel}: ${listed(results, ' ')}`);
  push(`deliveries             ${delivered.length > 0 ? delivered.join(' · ') : 'none yet'}`);
  push(`touch queue (sampled)  ${['waiting', 'delayed', 'active', 'failed', 'completed'].map((st) => `${st} ${n(s.jobs[st] ?? 0)}`).join(' · ')} · outbox ${n(s.outbox)}`);
  for (const f of s.footer) push(f);
  return lines;
}

function listed(counts: Record<string, number>, sep = ' · '): string {
  const entries = Object.entries(counts).filter(([, c]) => c > 0).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? 'none' : entries.map(([k, c]) => `${k} ${n(c)}`).join(sep);
}

function n(x: number): string {
  return Math.round(x).toLocaleString('en-US');
}

export function bar(fraction: number, width = 30): string {
  const f = Math.max(0, Math.min(1, fraction));
  const filled = Math.round(f * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(f * 100)).padStart(3)}%`;
}

function clockText(ms: number, zone: string): string {
  const f = new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  const p = Object.fromEntries(f.formatToParts(ms).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
}

const ALT_SCREEN_ON = '\x1b[?1049h\x1b[?25l';
const ALT_SCREEN_OFF = '\x1b[?25h\x1b[?1049l';
const NOTES_SHOWN = 3;

type Out = NodeJS.WritableStream & { isTTY?: boolean; columns?: number; rows?: number };

/**
 * Shows frames. On a terminal: in the alternate screen (as `top` does), redrawn in place from
 * the top-left corner and cut to the window, so any terminal size works; lines logged meanwhile
 * appear under the frame, and `finish()` returns to the normal screen and prints the last frame
 * and those lines there, where they stay. On a pipe or a log: a plain frame at most every
 * `plainEveryMs`, so a CI log stays readable.
 */
export class FramePrinter {
  private lastPlain = -Infinity;
  private inAltScreen = false;
  /** After `finish()`: a frame still being read when the view ended is not drawn. */
  private finished = false;
  private readonly notes: string[] = [];
  private readonly restore = (): void => {
    if (this.inAltScreen) this.out.write(ALT_SCREEN_OFF);
  };

  constructor(
    private readonly out: Out,
    private readonly plainEveryMs = 5_000,
    private readonly now: () => number = Date.now,
  ) {}

  get tty(): boolean {
    return this.out.isTTY === true;
  }

  frame(s: DemoSnapshot): void {
    if (this.finished) return;
    if (this.tty) {
      if (!this.inAltScreen) {
        this.out.write(ALT_SCREEN_ON);
        this.inAltScreen = true;
        // Whatever ends the process (a second Ctrl-C, a crash) gives the terminal back.
        process.once('exit', this.restore);
      }
      const lines = [...renderFrame(s, { columns: this.out.columns ?? 120 }), ...this.notes.slice(-NOTES_SHOWN)];
      const shown = lines.slice(0, Math.max(1, this.out.rows ?? lines.length));
      this.out.write(`\x1b[H${shown.map((l) => `${l}\x1b[K`).join('\n')}\x1b[J`);
    } else if (this.now() - this.lastPlain >= this.plainEveryMs) {
      this.lastPlain = this.now();
      this.out.write(`${renderFrame(s).join('\n')}\n\n`);
    }
  }

  /** A permanent line (under the frame while the live view is up, printed for good by `finish`). */
  line(text: string): void {
    if (this.inAltScreen) this.notes.push(text);
    else this.out.write(`${text}\n`);
  }

  /** Ends the live view: the last frame (if any) and the lines logged meanwhile, on the normal screen. */
  finish(last?: DemoSnapshot): void {
    this.finished = true;
    if (this.inAltScreen) {
      this.out.write(ALT_SCREEN_OFF);
      this.inAltScreen = false;
      process.off('exit', this.restore);
    }
    if (last !== undefined) this.out.write(`${renderFrame(last, this.tty ? { columns: this.out.columns ?? 120 } : {}).join('\n')}\n`);
    for (const note of this.notes.splice(0)) this.out.write(`${note}\n`);
  }
}
