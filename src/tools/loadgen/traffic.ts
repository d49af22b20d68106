import type { AppEvent } from '../../contract/event.js';
import { Random } from './random.js';

/**
 * Synthetic mobile-banking traffic (DOMAIN.md): a skewed population (a few users are on the
 * app every day, most rarely), sessions that follow the daily rhythm of the reporting time
 * zone, logins, page views of loan and fund pages, check-ins, transfers started and finished
 * or abandoned, payments, fund purchases, salary credits on each payroll user's payday,
 * registrations (some referred, some from a few "farm" devices), and a few duplicate and
 * late deliveries. Pure and seeded: the same options give the same events, in the same order.
 */
export interface TrafficOptions {
  seed: number;
  /** Registered users at the start. */
  users: number;
  /** Event time of the first session, ms since the epoch. */
  startMs: number;
  /** Average events per second of event time. */
  ratePerSec: number;
  /** Days and hours are those of this zone (the engine's reporting time zone). */
  reportingTimeZone: string;
  /** Share of deliveries repeated with the same event id (a producer retry). */
  duplicateRate?: number;
  /** Share of events delivered late, up to `lateMaxMs` after their event time. */
  lateRate?: number;
  lateMaxMs?: number;
  /** Share of sessions that are a new user's registration. */
  newUserRate?: number;
  /**
   * Share of sessions that look at loan pages (1-3 views), and separately at fund pages: the
   * playbook's interest journeys fire on 3 views in 24 h, so this sets most of its touch rate
   * (0.15: ~1.9% of events become touches; 0.05: ~0.9%).
   */
  interestShare?: number;
  /**
   * Event ids: 'short' (the default: the seed and a counter in base 36, 6-10 characters) or
   * 'uuid' (36 characters, as most producers send; same seed, same ids). The events are otherwise
   * the same. Stored states keep the latest ids, so this changes Redis memory and bytes per state.
   */
  idStyle?: 'short' | 'uuid';
}

export interface GeneratedEvent {
  event: AppEvent;
  /** When the event reaches the producer (event time, or later for late deliveries). */
  arrivalMs: number;
}

/** Relative session rate per local hour: quiet nights, peaks at commute, lunch and evening. */
const HOURLY_RHYTHM = [
  0.15, 0.08, 0.05, 0.04, 0.05, 0.12, 0.35, 0.7, 1.1, 1.0, 0.9, 1.0, 1.3, 1.2, 0.9, 0.85, 0.85, 0.9, 1.0, 1.2,
  1.4, 1.3, 0.9, 0.45,
];
const RHYTHM_MEAN = HOURLY_RHYTHM.reduce((a, b) => a + b, 0) / 24;
const OTHER_ZONES = ['Asia/Singapore', 'Asia/Hong_Kong', 'Europe/London', 'America/New_York'];
const CHANNELS: readonly (readonly [string, number])[] = [
  ['app', 70],
  ['mini_program', 15],
  ['web', 10],
  ['wechat', 5],
];
const FARM_DEVICES = ['d-farm-01', 'd-farm-02', 'd-farm-03'];
// login + home + 0.3 check-in + s × (2 loan views + 0.1 apply) + s × (2 fund views + 0.12 buy)
// + 0.2 × (start + 0.8 done) + 0.1 payment ≈ 3.39 at the default interest share s = 0.15
// (registrations, 1% of sessions, have 2); each 0.01 of s adds 0.0422. Written from 3.39, the
// constant this was before s was an option, so the default traffic is the same event for event.
function meanEventsPerSession(interestShare: number): number {
  return 3.39 + 4.22 * (interestShare - 0.15);
}
const DAY_MS = 86_400_000;

interface Pending extends GeneratedEvent {
  seq: number;
}

export class TrafficGenerator {
  private readonly rng: Random;
  private readonly opts: Required<TrafficOptions>;
  /** Cumulative Zipf weights over the user capacity (registered users are a prefix). */
  private readonly cumulative: Float64Array;
  private registered: number;
  private readonly heap: Pending[] = [];
  private nextSessionMs: number;
  private seq = 0;
  private eventCounter = 0;
  private readonly idPrefix: string;
  private scheduledPaydayFor = -1;
  private readonly hourCache = new Map<number, number>();
  private readonly dayFormatter: Intl.DateTimeFormat;

  constructor(options: TrafficOptions) {
    this.opts = {
      duplicateRate: 0.002,
      lateRate: 0.005,
      lateMaxMs: 30 * 60_000,
      newUserRate: 0.01,
      interestShare: 0.15,
      ...options,
      idStyle: options.idStyle ?? 'short',
    };
    if (!(this.opts.users >= 1)) throw new RangeError('users must be at least 1');
    if (!(this.opts.ratePerSec > 0)) throw new RangeError('ratePerSec must be above 0');
    if (!(this.opts.interestShare >= 0 && this.opts.interestShare <= 1)) throw new RangeError('interestShare must be between 0 and 1');
    this.rng = new Random(this.opts.seed);
    this.idPrefix = `e${(this.opts.seed >>> 0).toString(36)}`;
    this.registered = this.opts.users;
    this.cumulative = zipfCumulative(this.opts.users + Math.ceil(this.opts.users * 0.5) + 16, this.opts.seed);
    this.nextSessionMs = this.opts.startMs;
    this.dayFormatter = new Intl.DateTimeFormat('en-CA', {
      timeZone: this.opts.reportingTimeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      hourCycle: 'h23',
    });
  }

  /** Users registered so far (the starting population plus registrations). */
  registeredUsers(): number {
    return this.registered;
  }

  /** The next delivery in arrival order. The stream never ends; callers stop by time or count. */
  next(): GeneratedEvent {
    // Sessions are generated ahead until the earliest pending delivery cannot be overtaken.
    while (this.heap.length === 0 || (this.heap[0] as Pending).arrivalMs >= this.nextSessionMs) {
      this.startSession(this.nextSessionMs);
      const sessionsPerMs = (this.opts.ratePerSec / meanEventsPerSession(this.opts.interestShare) / 1000) * this.rhythm(this.nextSessionMs);
      this.nextSessionMs += Math.max(0.001, this.rng.exponential(1 / sessionsPerMs));
    }
    const top = popHeap(this.heap);
    return { event: top.event, arrivalMs: top.arrivalMs };
  }

  private startSession(t: number): void {
    this.schedulePaydays(t);
    if (this.registered < this.cumulative.length && this.rng.chance(this.opts.newUserRate)) {
      this.registerUser(t);
      return;
    }
    const user = this.pickUser();
    this.emitSession(user, t);
  }

  private registerUser(t: number): void {
    const user = this.registered++;
    const props: Record<string, string> = {};
    if (this.rng.chance(0.3) && user > 0) props.referrer = userId(this.pickUserBelow(user));
    const farm = this.rng.chance(0.05);
    const device = farm ? this.rng.pick(FARM_DEVICES) : deviceId(user, this.opts.seed);
    this.emit(user, t, 'register', props, 0, device);
    this.emit(user, t + 20_000, 'login', {}, 0, device);
    // Half the invitees qualify for the referral reward (a first card use, say) 2 h to 3 days
    // later; farm sign-ups among them are what the referral journey's device check withholds.
    const h = hash32(user, this.opts.seed ^ 0x4ef3);
    if (props.referrer !== undefined && h % 2 === 0) this.emit(user, t + 2 * 3_600_000 + ((h >>> 1) % (70 * 3_600_000)), 'referral_qualified', { referrer: props.referrer });
  }

  private emitSession(user: number, start: number): void {
    const r = this.rng;
    let t = start;
    const step = (): number => (t += 3_000 + r.int(40_000));
    this.emit(user, t, 'login', {});
    this.emit(user, step(), 'page_view', { page: 'home' });
    if (r.chance(0.3)) this.emit(user, step(), 'checkin', {});
    if (r.chance(this.opts.interestShare)) {
      const views = 1 + r.int(3);
      for (let i = 0; i < views; i++) this.emit(user, step(), 'page_view', { page: 'loan_detail' });
      if (r.chance(0.1)) this.emit(user, step(), 'loan_apply', { product: 'personal_loan' });
    }
    if (r.chance(this.opts.interestShare)) {
      const views = 1 + r.int(3);
      for (let i = 0; i < views; i++) this.emit(user, step(), 'page_view', { page: 'fund_detail' });
      if (r.chance(0.12)) this.emit(user, step(), 'fund_purchase', { product: 'money_market' }, amount(r, 500, 50_000));
    }
    if (r.chance(0.2)) {
      const flow = `f-${(this.seq + 1).toString(36)}`;
      this.emit(user, step(), 'transfer_started', { flow_id: flow });
      // Most transfers finish within minutes; the rest are abandoned (a reminder journey's target).
      if (r.chance(0.8)) this.emit(user, t + 20_000 + r.int(300_000), 'transfer_done', { flow_id: flow }, amount(r, 10, 20_000));
    }
    if (r.chance(0.1)) this.emit(user, step(), 'payment', { merchant_type: r.pick(['utility', 'retail', 'telecom']) }, amount(r, 5, 2_000));
  }

  /** Salary credits arrive on each payroll user's payday between 09:00 and 10:00 local. */
  private schedulePaydays(t: number): void {
    const day = this.localDayIndex(t);
    if (day === this.scheduledPaydayFor) return;
    this.scheduledPaydayFor = day;
    const dayOfMonth = this.localDayOfMonth(t);
    const offset = this.utcOffsetMs(t);
    const dayStart = Math.floor((t + offset) / DAY_MS) * DAY_MS - offset;
    for (let u = 0; u < this.registered; u++) {
      const h = hash32(u, this.opts.seed ^ 0x5a1a);
      if (h % 100 >= 30) continue; // 30% of users are payroll customers
      if (1 + ((h >>> 8) % 28) !== dayOfMonth) continue;
      const when = dayStart + 9 * 3_600_000 + ((h >>> 16) % 3_600_000);
      if (when < t) continue;
      this.emit(u, when, 'salary_credited', { employer_type: 'corporate' }, 3_000 + ((h >>> 4) % 40_000));
    }
  }

  private nextEventId(): string {
    const n = this.eventCounter++;
    if (this.opts.idStyle !== 'uuid') return `${this.idPrefix}-${n.toString(36)}`;
    // Shaped like a version-4 UUID; a function of the seed and the counter, not of the rng, so
    // the traffic is the same event for event whichever style is chosen.
    const hex = [1, 2, 3, 4].map((k) => hash32(n, (this.opts.seed ^ Math.imul(k, 0x2545f491)) >>> 0).toString(16).padStart(8, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
  }

  private emit(user: number, timeMs: number, name: string, props: Record<string, string>, value = 0, device?: string): void {
    const r = this.rng;
    const h = hash32(user, this.opts.seed);
    const tz = h % 100 < 85 ? this.opts.reportingTimeZone : (OTHER_ZONES[h % OTHER_ZONES.length] as string);
    const channel = channelOf(h);
    const event: AppEvent = {
      eventId: this.nextEventId(),
      userId: userId(user),
      name,
      timeMs: Math.round(timeMs),
      channel,
      props,
      value,
      tz,
      deviceId: device ?? deviceId(user, this.opts.seed),
      sentMs: 0,
    };
    let arrival = event.timeMs;
    if (r.chance(this.opts.lateRate)) arrival += 60_000 + r.int(Math.max(1, this.opts.lateMaxMs - 60_000));
    this.push(event, arrival);
    if (r.chance(this.opts.duplicateRate)) this.push(event, arrival + 100 + r.int(10_000));
  }

  private push(event: AppEvent, arrivalMs: number): void {
    pushHeap(this.heap, { event: { ...event, sentMs: arrivalMs }, arrivalMs, seq: this.seq++ });
  }

  private pickUser(): number {
    return this.pickUserBelow(this.registered);
  }

  private pickUserBelow(limit: number): number {
    const cum = this.cumulative;
    const x = this.rng.next() * (cum[limit - 1] as number);
    let lo = 0;
    let hi = limit - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cum[mid] as number) > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  private rhythm(t: number): number {
    return (HOURLY_RHYTHM[this.localHour(t)] as number) / RHYTHM_MEAN;
  }

  private localHour(t: number): number {
    const hourKey = Math.floor(t / 3_600_000);
    let hour = this.hourCache.get(hourKey);
    if (hour === undefined) {
      hour = Number(partsOf(this.dayFormatter, t).hour);
      if (this.hourCache.size > 10_000) this.hourCache.clear();
      this.hourCache.set(hourKey, hour);
    }
    return hour;
  }

  private localDayIndex(t: number): number {
    return Math.floor((t + this.utcOffsetMs(t)) / DAY_MS);
  }

  private localDayOfMonth(t: number): number {
    return Number(partsOf(this.dayFormatter, t).day);
  }

  /** The reporting zone's offset from UTC at `t`, in ms (positive east of Greenwich). */
  private utcOffsetMs(t: number): number {
    const p = partsOf(this.dayFormatter, t);
    const asUtc = Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour));
    return asUtc - (t - (t % 3_600_000));
  }
}

export function userId(index: number): string {
  return `u${String(index).padStart(7, '0')}`;
}

function deviceId(user: number, seed: number): string {
  return `d-${hash32(user, seed ^ 0xd3c1ce).toString(36)}`;
}

function channelOf(h: number): string {
  let r = (h >>> 10) % 100;
  for (const [name, w] of CHANNELS) {
    if (r < w) return name;
    r -= w;
  }
  return 'app';
}

function amount(r: Random, min: number, max: number): number {
  return Math.round((min + r.next() * (max - min)) * 100) / 100;
}

function partsOf(f: Intl.DateTimeFormat, t: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of f.formatToParts(t)) out[p.type] = p.value;
  return out;
}

/** A 32-bit integer hash of (n, seed): per-user traits without storing them. */
export function hash32(n: number, seed: number): number {
  let h = (n ^ seed ^ 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Cumulative Zipf(0.9) weights over a seeded permutation of ranks: user 0 is not always the
 * most active one, but the activity of the population is as skewed as real app usage.
 */
function zipfCumulative(capacity: number, seed: number): Float64Array {
  const rng = new Random(seed ^ 0x21bf);
  const ranks = new Uint32Array(capacity);
  for (let i = 0; i < capacity; i++) ranks[i] = i;
  for (let i = capacity - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const tmp = ranks[i] as number;
    ranks[i] = ranks[j] as number;
    ranks[j] = tmp;
  }
  const cum = new Float64Array(capacity);
  let total = 0;
  for (let i = 0; i < capacity; i++) {
    total += 1 / Math.pow((ranks[i] as number) + 1, 0.9);
    cum[i] = total;
  }
  return cum;
}

function pushHeap(heap: Pending[], item: Pending): void {
  heap.push(item);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(item, heap[parent] as Pending)) break;
    heap[i] = heap[parent] as Pending;
    i = parent;
  }
  heap[i] = item;
}

function popHeap(heap: Pending[]): Pending {
  const top = heap[0] as Pending;
  const last = heap.pop() as Pending;
  if (heap.length > 0) {
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      let mItem = last;
      if (l < heap.length && before(heap[l] as Pending, mItem)) {
        m = l;
        mItem = heap[l] as Pending;
      }
      if (r < heap.length && before(heap[r] as Pending, mItem)) {
        m = r;
        mItem = heap[r] as Pending;
      }
      if (m === i) break;
      heap[i] = mItem;
      i = m;
    }
    heap[i] = last;
  }
  return top;
}

function before(a: Pending, b: Pending): boolean {
  return a.arrivalMs < b.arrivalMs || (a.arrivalMs === b.arrivalMs && a.seq < b.seq);
}
