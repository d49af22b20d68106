/**
 * The brute-force reference for the streaming state core. Written from the plain meaning of
 * DESIGN.md §4 and the README's semantics, sharing no code with src/: plain loops over the
 * log, full sets of active days, no incremental tricks. If the engine and this model agree on
 * every count and every user, the engine's incremental bookkeeping is right.
 */

export interface RefEvent {
  eventId: string;
  userId: string;
  name: string;
  timeMs: number;
  props: Record<string, string>;
  value: number;
  tz: string;
  channel: string;
  /** The device the event came from; "" or absent = none. */
  deviceId?: string;
}

/** One delivered message, in the order its partition holds it. */
export interface RefMessage {
  partition: number;
  /** null = not a valid event (goes to the dead-letter topic). */
  event: RefEvent | null;
}

export interface RefSpec {
  reportingTimeZone: string;
  allowedLatenessMs: number;
  maxFutureSkewMs: number;
  metrics: Array<{ name: string; events: string[] | null }>;
  newForMs: number;
  dormantAfterMs: number;
  churnedAfterMs: number;
  reactivatedForMs: number;
  counters: Array<{ name: string; eventName: string; props: Record<string, string>; keep: number; withinMs: number }>;
  streaks: Array<{ name: string; eventName: string }>;
  /** How many recent event ids per user make a repeat a duplicate. */
  recentIds: number;
  /** Splits by channel or a trait (the latest value of that event prop); `values` = exact list. */
  breakdowns?: Array<{ name: string; by: 'channel' | 'trait'; trait?: string; values?: string[] }>;
  /** Record each user's sign-up: their first applied event of this name that carries a device. */
  signups?: { eventName: string };
}

/** A user's sign-up: the message that carried it (partition, offset in that partition), its time and device. */
export interface RefSignup {
  partition: number;
  offset: number;
  at: number;
  deviceId: string;
}

export interface RefUser {
  firstSeen: number;
  lastSeen: number;
  reactivatedAt: number | null;
  tz: string;
  days: Map<string, Set<string>>; // metric -> set of YYYY-MM-DD (reporting zone)
  counterTimes: Map<string, number[]>; // all matching times, arrival order
  streakDays: Map<string, string[]>; // streak -> days (user zone) in arrival order
  recentIds: string[];
  traits: Map<string, string>;
  /** `${metric}/${breakdown}/${value}` -> active days (reporting zone). */
  breakdownDays: Map<string, Set<string>>;
  /** With `spec.signups`: the user's sign-up, null while none. */
  signup: RefSignup | null;
}

export interface RefResult {
  users: Map<string, RefUser>;
  invalid: number;
  late: number;
  duplicates: number;
  clamped: number;
  newUsersByDay: Map<string, number>;
  /** `${metric} ${day}` -> gap bucket -> visits on that day that followed a visit that many days earlier. */
  gaps: Map<string, Map<string, number>>;
}

/** Local calendar date (YYYY-MM-DD) of an instant in a zone, via Intl (slow, obviously right). */
const formatters = new Map<string, Intl.DateTimeFormat>();
export function localDate(ms: number, timeZone: string): string {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' });
    formatters.set(timeZone, f);
  }
  return f.format(ms);
}

export function runReference(messages: RefMessage[], spec: RefSpec, now: number): RefResult {
  const out: RefResult = { users: new Map(), invalid: 0, late: 0, duplicates: 0, clamped: 0, newUsersByDay: new Map(), gaps: new Map() };
  const streamTime = new Map<number, number>();
  // Offsets as the topic assigns them: messages in order per partition, invalid ones included.
  const nextOffset = new Map<number, number>();
  for (const m of messages) {
    const offset = nextOffset.get(m.partition) ?? 0;
    nextOffset.set(m.partition, offset + 1);
    if (m.event === null) {
      out.invalid++;
      continue;
    }
    const e = m.event;
    const user = out.users.get(e.userId);
    if (user && user.recentIds.includes(e.eventId)) {
      out.duplicates++;
      continue;
    }
    const st = streamTime.get(m.partition) ?? 0;
    if (e.timeMs < st - spec.allowedLatenessMs) {
      out.late++;
      continue;
    }
    let t = e.timeMs;
    if (t > now + spec.maxFutureSkewMs) {
      // A clock from the future says nothing about how far the stream has got.
      t = now;
      out.clamped++;
    } else streamTime.set(m.partition, Math.max(st, t));

    let u = user;
    if (!u) {
      u = { firstSeen: t, lastSeen: t, reactivatedAt: null, tz: '', days: new Map(), counterTimes: new Map(), streakDays: new Map(), recentIds: [], traits: new Map(), breakdownDays: new Map(), signup: null };
      out.users.set(e.userId, u);
      const day = localDate(t, spec.reportingTimeZone);
      out.newUsersByDay.set(day, (out.newUsersByDay.get(day) ?? 0) + 1);
    } else {
      if (t - u.lastSeen >= spec.dormantAfterMs) u.reactivatedAt = t;
      u.lastSeen = Math.max(u.lastSeen, t);
      u.firstSeen = Math.min(u.firstSeen, t);
    }
    u.recentIds.push(e.eventId);
    if (u.recentIds.length > spec.recentIds) u.recentIds.shift();
    if (spec.signups !== undefined && u.signup === null && e.name === spec.signups.eventName && (e.deviceId ?? '') !== '') {
      u.signup = { partition: m.partition, offset, at: t, deviceId: e.deviceId as string };
    }
    if (e.tz !== '') u.tz = e.tz;
    for (const b of spec.breakdowns ?? []) if (b.trait !== undefined && e.props[b.trait] !== undefined) u.traits.set(b.trait, e.props[b.trait] as string);
    for (const metric of spec.metrics) {
      if (metric.events !== null && !metric.events.includes(e.name)) continue;
      let set = u.days.get(metric.name);
      if (!set) u.days.set(metric.name, (set = new Set()));
      const today = localDate(t, spec.reportingTimeZone);
      // A visit on a day later than every earlier one (in arrival order) records the gap to the latest.
      if (set.size > 0 && !set.has(today)) {
        const latest = Math.max(...[...set].map(dayIndex));
        const gap = dayIndex(today) - latest;
        if (gap > 0) {
          const bucket = gap <= 3 ? String(gap) : gap <= 7 ? '4-7' : gap <= 14 ? '8-14' : gap <= 30 ? '15-30' : '31+';
          const k = `${metric.name} ${today}`;
          const hist = out.gaps.get(k) ?? new Map<string, number>();
          hist.set(bucket, (hist.get(bucket) ?? 0) + 1);
          out.gaps.set(k, hist);
        }
      }
      set.add(today);
      for (const b of spec.breakdowns ?? []) {
        const raw = b.by === 'channel' ? e.channel : (u.traits.get(b.trait as string) ?? '');
        const value = raw === '' ? 'unknown' : b.values === undefined || b.values.includes(raw) ? raw : 'other';
        const key = `${metric.name}/${b.name}/${value}`;
        let days = u.breakdownDays.get(key);
        if (!days) u.breakdownDays.set(key, (days = new Set()));
        days.add(localDate(t, spec.reportingTimeZone));
      }
    }
    for (const c of spec.counters) {
      if (e.name !== c.eventName) continue;
      if (Object.entries(c.props).some(([k, v]) => e.props[k] !== v)) continue;
      const list = u.counterTimes.get(c.name) ?? [];
      list.push(t);
      u.counterTimes.set(c.name, list);
    }
    for (const s of spec.streaks) {
      if (e.name !== s.eventName) continue;
      const list = u.streakDays.get(s.name) ?? [];
      list.push(localDate(t, u.tz !== '' ? u.tz : spec.reportingTimeZone));
      u.streakDays.set(s.name, list);
    }
  }
  return out;
}

const DAY_MS = 86_400_000;
const dayIndex = (d: string): number => Date.parse(`${d}T00:00:00Z`) / DAY_MS;
const dayString = (i: number): string => new Date(i * DAY_MS).toISOString().slice(0, 10);

/** Users with at least one active day of `metric` in [from, to] (inclusive dates). */
export function activeBetween(result: RefResult, metric: string, from: string, to: string): number {
  const lo = dayIndex(from);
  const hi = dayIndex(to);
  let n = 0;
  for (const u of result.users.values()) {
    const days = u.days.get(metric);
    if (!days) continue;
    for (const d of days) {
      const i = dayIndex(d);
      if (i >= lo && i <= hi) {
        n++;
        break;
      }
    }
  }
  return n;
}

/** Per value of a breakdown: users with an active day of `metric` under that value in [from, to]. */
export function breakdownBetween(result: RefResult, metric: string, breakdown: string, from: string, to: string): Map<string, number> {
  const lo = dayIndex(from);
  const hi = dayIndex(to);
  const out = new Map<string, number>();
  const prefix = `${metric}/${breakdown}/`;
  for (const u of result.users.values()) {
    for (const [key, days] of u.breakdownDays) {
      if (!key.startsWith(prefix)) continue;
      if ([...days].some((d) => dayIndex(d) >= lo && dayIndex(d) <= hi)) out.set(key.slice(prefix.length), (out.get(key.slice(prefix.length)) ?? 0) + 1);
    }
  }
  return out;
}

/** The days-between-visits histogram of `metric` on `day`, every bucket present. */
export function referenceGaps(result: RefResult, metric: string, day: string): Record<string, number> {
  const hist = result.gaps.get(`${metric} ${day}`) ?? new Map<string, number>();
  return Object.fromEntries(['1', '2', '3', '4-7', '8-14', '15-30', '31+'].map((b) => [b, hist.get(b) ?? 0]));
}

/** The dates every window query should be checked on: from the first active day to 30 days after the last. */
export function allDays(result: RefResult): string[] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const u of result.users.values()) for (const set of u.days.values()) for (const d of set) {
    lo = Math.min(lo, dayIndex(d));
    hi = Math.max(hi, dayIndex(d));
  }
  const out: string[] = [];
  for (let i = lo; i <= hi + 30; i++) out.push(dayString(i));
  return out;
}

/** The expected window bounds for a query, from the plain definitions. */
export function windowBounds(window: 'dau' | 'wau' | 'mau' | 'week' | 'month', day: string): { from: string; to: string } {
  const i = dayIndex(day);
  if (window === 'dau') return { from: day, to: day };
  if (window === 'wau') return { from: dayString(i - 6), to: day };
  if (window === 'mau') return { from: dayString(i - 29), to: day };
  if (window === 'week') {
    const weekday = new Date(i * DAY_MS).getUTCDay(); // Sunday = 0
    const monday = i - ((weekday + 6) % 7);
    return { from: dayString(monday), to: dayString(monday + 6) };
  }
  const [y, m] = day.split('-').map(Number) as [number, number];
  const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return { from: `${day.slice(0, 7)}-01`, to: `${day.slice(0, 7)}-${String(last).padStart(2, '0')}` };
}

/** Lifecycle stage at `t`, from the rules in plain words. */
export function referenceStage(u: RefUser, t: number, spec: RefSpec): string {
  const idle = t - u.lastSeen;
  if (idle >= spec.churnedAfterMs) return 'churned';
  if (idle >= spec.dormantAfterMs) return 'dormant';
  if (u.reactivatedAt !== null && t - u.reactivatedAt < spec.reactivatedForMs) return 'reactivated';
  if (t - u.firstSeen < spec.newForMs) return 'new';
  return 'active';
}

/**
 * Streak as the engine documents it: days are taken in arrival order; a day right after the
 * last day extends the run, a later day starts a new run, an earlier or equal day changes nothing.
 */
export function referenceStreak(days: string[]): { current: number; best: number; last: string } {
  let last = '';
  let current = 0;
  let best = 0;
  for (const d of days) {
    if (last === '' || dayIndex(d) > dayIndex(last) + 1) {
      last = d;
      current = 1;
    } else if (dayIndex(d) === dayIndex(last) + 1) {
      last = d;
      current++;
    }
    best = Math.max(best, current);
  }
  return { current, best, last };
}

/** The last `keep` matching times (arrival order does not matter: they are sorted). */
export function referenceCounter(times: number[], keep: number): number[] {
  return [...times].sort((a, b) => a - b).slice(-keep);
}
