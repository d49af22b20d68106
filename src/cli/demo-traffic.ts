import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { encodeEvent, type AppEvent } from '../contract/event.js';
import { eventFromJson } from '../contract/json.js';
import { validateEvent, type EventLimits } from '../contract/validate.js';
import { TrafficGenerator } from '../tools/loadgen/traffic.js';

/** Where the demo's traffic goes: the in-process source (`InProcessSource.produce`). */
export interface EventFeed {
  /** Resolves once the event is queued; waits while the pipeline is behind (backpressure). */
  produce(key: string, value: Uint8Array, timestampMs?: number): Promise<void>;
}

const DAY_MS = 86_400_000;

/**
 * Events per registered user per day in the replayed history. The load generator's users are
 * Zipf-skewed (a few on the app daily, most rarely), so half an event per registered user per
 * day gives, for 10,000 users over 45 days (~230,000 events), an MAU of ~8,700 of the ~10,600
 * registered by then, ~1,000 users in the last 24 hours, ~2,400 last seen 14-30 days ago
 * (dormant) and ~800 longer ago (churned): every lifecycle stage has people in it.
 */
export const HISTORY_EVENTS_PER_USER_DAY = 0.5;

export interface HistoryOptions {
  seed: number;
  users: number;
  days: number;
  /** The end of the history (event time): the moment the live traffic takes over. */
  endMs: number;
  reportingTimeZone: string;
  eventsPerUserDay?: number;
  signal?: AbortSignal;
  /** Called about every 5,000 events with the share of the history replayed. */
  onProgress?: (p: { produced: number; fraction: number }) => void;
}

/**
 * Replays `days` of synthetic history ending at `endMs`, unpaced: as fast as the pipeline takes
 * it (the feed's backpressure paces it). The generator is the load generator's with the same
 * seed as the live traffic, so a user keeps their time zone, channel, device and payday from
 * history to live (those hash the user id with the seed). The live generator is a second one
 * over the population the history ended with (`registeredUsers`), so its registrations are new
 * users; history event ids get an `h` prefix so they never collide with the live ones.
 *
 * Why replay at all: DAU/WAU/MAU, lifecycle stages, streaks and "inactive for 14 days" need
 * weeks of past activity, which a minute of live traffic cannot give. Why not replay faster
 * than real time instead: the engine judges the future and the age of a trigger by the wall
 * clock (DESIGN §4) — an event ahead of it by more than maxFutureSkew is clamped, and journeys
 * ignore events older than maxTriggerAge — so history is history: it builds state, and only
 * its last hour (and the live traffic) can trigger journeys. Timers that fell due during the
 * history fire at once when the sweep sees them: stage changes are recorded; journey timers
 * due more than maxTriggerAge ago are skipped as stale, and the view counts them.
 */
export async function replayHistory(feed: EventFeed, o: HistoryOptions): Promise<{ produced: number; registeredUsers: number }> {
  if (o.days <= 0) return { produced: 0, registeredUsers: o.users };
  const startMs = o.endMs - o.days * DAY_MS;
  const perDay = o.users * (o.eventsPerUserDay ?? HISTORY_EVENTS_PER_USER_DAY);
  const generator = new TrafficGenerator({ seed: o.seed, users: o.users, startMs, ratePerSec: perDay / 86_400, reportingTimeZone: o.reportingTimeZone });
  let produced = 0;
  for (;;) {
    if (o.signal?.aborted) break;
    const next = generator.next();
    if (next.arrivalMs >= o.endMs) break;
    const event: AppEvent = { ...next.event, eventId: `h${next.event.eventId}` };
    await feed.produce(event.userId, encodeEvent(event));
    produced++;
    if (produced % 5_000 === 0) {
      o.onProgress?.({ produced, fraction: (next.arrivalMs - startMs) / (o.endMs - startMs) });
      // Let timers (the view, the sweep, signals) run between chunks.
      await new Promise((r) => setImmediate(r));
    }
  }
  o.onProgress?.({ produced, fraction: 1 });
  // The live traffic's population: registrations during the history are users by now.
  return { produced, registeredUsers: generator.registeredUsers() };
}

export interface LiveOptions {
  seed: number;
  users: number;
  ratePerSec: number;
  reportingTimeZone: string;
  /** Stop after this much wall-clock time; unset: until the signal. */
  durationMs?: number;
  signal?: AbortSignal;
  now?: () => number;
}

const TICK_MS = 10;

/**
 * Synthetic traffic in real time: events leave at their arrival time on the wall clock (as
 * `nudge loadgen` paces them), so event times are "now" and journeys react to them. If the
 * pipeline cannot keep up, the feed's backpressure slows the traffic and the view shows the
 * lower rate rather than a growing queue.
 */
export async function runLive(feed: EventFeed, o: LiveOptions): Promise<number> {
  const now = o.now ?? Date.now;
  const wallStart = now();
  const generator = new TrafficGenerator({ seed: o.seed, users: o.users, startMs: wallStart, ratePerSec: o.ratePerSec, reportingTimeZone: o.reportingTimeZone });
  const end = o.durationMs === undefined ? Infinity : wallStart + o.durationMs;
  let produced = 0;
  let pending = generator.next();
  while (!o.signal?.aborted && now() < end) {
    const horizon = Math.min(now(), end);
    while (pending.arrivalMs <= horizon && !o.signal?.aborted) {
      await feed.produce(pending.event.userId, encodeEvent(pending.event));
      produced++;
      pending = generator.next();
    }
    const wait = Math.min(TICK_MS, Math.max(0, pending.arrivalMs - now()), Math.max(0, end - now()));
    await sleep(wait, o.signal);
  }
  return produced;
}

export interface LinesResult {
  lines: number;
  produced: number;
  rejected: number;
}

/**
 * `nudge demo -`: JSON lines (the contract's field names, snake_case or camelCase, as `nudge
 * produce` reads them) into the feed. A line that is not a valid event is reported with its
 * number and skipped; blank lines and `#` comments are skipped.
 */
export async function feedLines(
  input: Readable,
  feed: EventFeed,
  o: { limits: EventLimits; now?: () => number; signal?: AbortSignal; onReject?: (line: number, code: string, message: string) => void },
): Promise<LinesResult> {
  const now = o.now ?? Date.now;
  const result: LinesResult = { lines: 0, produced: 0, rejected: 0 };
  const reader = createInterface({ input, crlfDelay: Infinity });
  const stop = (): void => reader.close();
  o.signal?.addEventListener('abort', stop, { once: true });
  try {
    for await (const raw of reader) {
      result.lines++;
      const text = raw.trim();
      if (text === '' || text.startsWith('#')) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        result.rejected++;
        o.onReject?.(result.lines, 'NUDGE_EVENT_BAD_JSON', 'not valid JSON; each line must be one JSON object such as {"event_id":"e1","user_id":"u1","name":"login","time_ms":1700000000000}');
        continue;
      }
      const converted = eventFromJson(parsed);
      const invalid = converted.ok ? validateEvent(converted.event, o.limits, now()) : converted.rejection;
      if (invalid !== null || !converted.ok) {
        result.rejected++;
        if (invalid) o.onReject?.(result.lines, invalid.code, invalid.message);
        continue;
      }
      await feed.produce(converted.event.userId, encodeEvent(converted.event));
      result.produced++;
      if (o.signal?.aborted) break;
    }
  } finally {
    o.signal?.removeEventListener('abort', stop);
  }
  return result;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
