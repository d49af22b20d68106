import { createHash } from 'node:crypto';

/**
 * The reference model of journeys and the policy gate (issue 4, "Prove it"), written from the
 * plain meaning of docs/config.md (sections journeys, policy, reason codes) and DESIGN.md §4/§5,
 * sharing no code with src/: plain loops over one user's calls, a brute-force rolling window,
 * the user's zone read with Intl directly.
 *
 * What the model takes from the engine is only *when* things happened: the sequence of calls
 * (each event the engine decided, and each timer tick it ran for the user) with the wall clock
 * of each. Those are the environment — BullMQ and the timer sweep run on the real clock — not the
 * rules. Everything else (who enters, with which group and variant, which touch is sent on which
 * channel at which time, every suppression and its reason, every skip, cancellation, conversion
 * and late follow-up) is decided here. Waits are due by the model's own arithmetic; if the
 * engine never ticks a user whose wait is due, the model reports the wait as overdue.
 *
 * Where the documentation leaves something open, the model does not guess: it records a note
 * (`notes`) and the test requires there to be none, so the scenario must stay clear of it.
 * Readings the model does take, stated here:
 * - a step whose time has already passed when it is decided (a timer firing a little after its
 *   due time) is sent at the decision time: `sendAt` is never in the past;
 * - a touch scheduled and later suppressed at send time still counted against caps while it
 *   was scheduled (the scenario never depends on it: users who opt out later get no touch that
 *   could be capped by it);
 * - how long a fired absence wait is remembered for a late follow-up is not documented: a
 *   follow-up more than one `within` after the deadline is a note.
 */

// ---- the rules, as plain data (the test states the same journeys as its YAML) ----

export type PropTest = { equals: string } | { in: string[] } | { range: { gt?: number; gte?: number; lt?: number; lte?: number } };

export interface RefFilter {
  names?: string[];
  props?: Record<string, PropTest>;
}

export type RefTrigger =
  | { type: 'event'; match: RefFilter }
  | { type: 'count'; match: RefFilter; atLeast: number; withinMs: number }
  | { type: 'firstTime'; match: RefFilter }
  | { type: 'notFollowedBy'; first: RefFilter; then: RefFilter; withinMs: number; by: string | null };

export interface RefJourney {
  id: string;
  priority: number;
  trigger: RefTrigger;
  exitOn: RefFilter[];
  reEntry: { kind: 'never' } | { kind: 'cooldown'; ms: number };
  /** In order of preference. */
  channels: string[];
  template: string;
  steps: Array<{ id: string; delayMs: number; channels?: string[]; template?: string }>;
  variants: Array<{ id: string; weight: number; template?: string }>;
  /** Share 0..1. */
  holdout: number;
  useGlobalHoldout: boolean;
  ignoreCaps: boolean;
  /** The journey's quiet-hours action; undefined = the policy's. */
  quietHours?: 'defer' | 'drop';
  conversion: { match: RefFilter; withinMs: number } | null;
}

export interface RefPolicy {
  consentDefault: boolean;
  consentByChannel: Record<string, boolean>;
  consentEvents: Array<{ match: RefFilter; channel?: string; channelProp?: string; grant?: boolean; grantProp?: string }>;
  quietHours: { fromMinute: number; toMinute: number; action: 'defer' | 'drop'; channels: string[] } | null;
  /** Rolling caps only (the scenario uses no calendar cap). channel null = every channel. */
  caps: Array<{ name: string; channel: string | null; max: number; withinMs: number }>;
  minGapMs: number | null;
  globalHoldout: number;
  holdoutSalt: string;
}

export interface RefRules {
  reportingTimeZone: string;
  maxTriggerAgeMs: number;
  policy: RefPolicy;
  journeys: RefJourney[];
}

export interface RefEvent {
  eventId: string;
  userId: string;
  name: string;
  timeMs: number;
  props: Record<string, string>;
  tz: string;
}

/** One thing the engine did for a user, at wall-clock `now`: an event, or a timer tick (null). */
export interface RefCall {
  now: number;
  event: RefEvent | null;
}

// ---- what the model decides ----

export type Group = 'variant' | 'holdout' | 'global_holdout';

export interface RefTouch {
  touchId: string;
  userId: string;
  journeyId: string;
  stepId: string;
  channel: string;
  template: string;
  variant: string;
  group: Group;
  occurrence: string;
  triggerEventId: string;
  reason: string;
  outcome: 'send' | 'defer' | 'suppress' | 'holdout';
  sendAt: number;
  decidedAt: number;
  /** Wall clock of the exit that cancelled it (a touch not yet due), or null. */
  cancelledAt: number | null;
}

export interface RefEntry {
  at: number;
  occurrence: string;
  triggerEventId: string;
  group: Group;
  variant: string;
  exitedAt?: number;
  convertedAt?: number;
}

export interface RefUserResult {
  userId: string;
  touches: RefTouch[];
  skips: Array<{ journeyId: string; reason: string; occurrence: string }>;
  cancellations: Array<{ journeyId: string; reason: 'exit' | 'followed_by'; kind: 'touch' | 'step_wait' | 'absence_wait' }>;
  /** Entries, counted from the first step's decision (intent to treat). */
  entered: Array<{ journeyId: string; group: Group; variant: string }>;
  conversions: Array<{ journeyId: string; group: Group; variant: string }>;
  lateFollowUps: Array<{ journeyId: string; key: string }>;
  /** Every wait that fired: how late after its due time (the engine's tick) it fired. */
  fired: Array<{ journeyId: string; kind: 'absence' | 'step'; dueAt: number; firedAt: number }>;
  /** Waits still pending after the last call. */
  pending: Array<{ journeyId: string; kind: 'absence' | 'step'; dueAt: number }>;
  /** Consent as recorded after each change: (wall clock of the call, channel, choice). */
  consentLog: Array<{ now: number; channel: string; granted: boolean; at: number }>;
  exitLog: Array<{ now: number; journeyId: string }>;
  final: { entries: Record<string, RefEntry>; history: Array<{ touchId: string; at: number; channel: string }>; consent: Record<string, { granted: boolean; at: number }> };
  notes: string[];
}

export const TOUCH_OUTCOME: Record<string, RefTouch['outcome']> = {
  sent: 'send',
  quiet_hours_deferred: 'defer',
  holdout: 'holdout',
  global_holdout: 'holdout',
  no_consent: 'suppress',
  opted_out: 'suppress',
  quiet_hours: 'suppress',
  cap_channel: 'suppress',
  cap_all_channels: 'suppress',
  min_gap: 'suppress',
  priority_conflict: 'suppress',
};

// ---- deterministic assignment and touch ids ----

/**
 * Reimplemented here from the documented rule, with node:crypto directly (no code shared with
 * src/rules/assignment.ts): SHA-256 over the parts, each written as `${length}:${part};`; the
 * first 13 hex digits (52 bits) divided by 2^52 give a number in [0, 1).
 * - global holdout: parts ("global-holdout", holdoutSalt, user) < policy.globalHoldout
 * - journey holdout: parts ("holdout", journey, user) < journey.holdout
 * - variant: parts ("variant", journey, user) × total weight, walked through the cumulative weights
 * - touch id: "t" + the first 32 hex digits of SHA-256 over (journey, step, user, occurrence),
 *   the occurrence being the triggering event id or, for a timer-triggered entry, the event id of
 *   the `first` event that started the absence wait (DESIGN §5).
 */
function sha256Parts(parts: readonly string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(`${p.length}:${p};`);
  return h.digest('hex');
}

function unitOf(parts: readonly string[]): number {
  return parseInt(sha256Parts(parts).slice(0, 13), 16) / 2 ** 52;
}

export function refTouchId(journeyId: string, stepId: string, userId: string, occurrence: string): string {
  return `t${sha256Parts([journeyId, stepId, userId, occurrence]).slice(0, 32)}`;
}

export function refAssignment(rules: RefRules, j: RefJourney, userId: string): { group: Group; variant: string } {
  let variant = '';
  if (j.variants.length > 0) {
    const total = j.variants.reduce((s, v) => s + v.weight, 0);
    const u = unitOf(['variant', j.id, userId]) * total;
    let acc = 0;
    variant = j.variants[j.variants.length - 1]!.id;
    for (const v of j.variants) {
      acc += v.weight;
      if (u < acc) {
        variant = v.id;
        break;
      }
    }
  }
  const p = rules.policy;
  if (j.useGlobalHoldout && p.globalHoldout > 0 && unitOf(['global-holdout', p.holdoutSalt, userId]) < p.globalHoldout) return { group: 'global_holdout', variant };
  if (j.holdout > 0 && unitOf(['holdout', j.id, userId]) < j.holdout) return { group: 'holdout', variant };
  return { group: 'variant', variant };
}

// ---- filters ----

export function refMatches(f: RefFilter, e: RefEvent): boolean {
  if (f.names !== undefined && f.names.length > 0 && !f.names.includes(e.name)) return false;
  for (const [key, test] of Object.entries(f.props ?? {})) {
    const v = Object.prototype.hasOwnProperty.call(e.props, key) ? e.props[key] : undefined;
    if ('equals' in test) {
      if (v !== test.equals) return false;
    } else if ('in' in test) {
      if (v === undefined || !test.in.includes(v)) return false;
    } else {
      // "a prop that is not a number never passes"
      if (v === undefined || v.trim() === '') return false;
      const n = Number(v);
      if (!Number.isFinite(n)) return false;
      const r = test.range;
      if (r.gt !== undefined && !(n > r.gt)) return false;
      if (r.gte !== undefined && !(n >= r.gte)) return false;
      if (r.lt !== undefined && !(n < r.lt)) return false;
      if (r.lte !== undefined && !(n <= r.lte)) return false;
    }
  }
  return true;
}

// ---- local time (Intl directly; the scenario uses zones without daylight saving) ----

const DAY = 86_400_000;
const formatters = new Map<string, Intl.DateTimeFormat>();

function zoneOffsetMs(ms: number, tz: string): number {
  let f = formatters.get(tz);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    formatters.set(tz, f);
  }
  const parts: Record<string, number> = {};
  for (const p of f.formatToParts(new Date(ms))) if (p.type !== 'literal') parts[p.type] = Number(p.value);
  const asUtc = Date.UTC(parts.year!, parts.month! - 1, parts.day!, parts.hour!, parts.minute!, parts.second!);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

function localMinute(ms: number, tz: string): number {
  const local = ms + zoneOffsetMs(ms, tz);
  return Math.floor((((local % DAY) + DAY) % DAY) / 60_000);
}

/** The first instant at or after `ms` whose local time in `tz` is `minute` (a fixed-offset zone). */
function nextLocal(ms: number, minute: number, tz: string): number {
  const off = zoneOffsetMs(ms, tz);
  const local = ms + off;
  let candidate = Math.floor(local / DAY) * DAY + minute * 60_000;
  if (candidate < local) candidate += DAY;
  const result = candidate - off;
  if (zoneOffsetMs(result, tz) !== off) throw new Error(`the reference handles zones without a UTC offset change only; ${tz} changes offset between ${ms} and ${result}`);
  return result;
}

function inQuietHours(q: NonNullable<RefPolicy['quietHours']>, ms: number, tz: string): boolean {
  const m = localMinute(ms, tz);
  return q.fromMinute < q.toMinute ? m >= q.fromMinute && m < q.toMinute : m >= q.fromMinute || m < q.toMinute;
}

// ---- caps ----

/**
 * The most touches of `times` in any rolling window [x, x + W) that also holds `s`, brute force:
 * the count only changes where a touch enters (x = t - W + 1) or leaves (x = t + 1) the window,
 * so it is enough to try those starts, and the first one, inside (s - W, s].
 */
function busiestWindowHolding(times: readonly number[], s: number, w: number): number {
  const starts = new Set<number>([s - w + 1, s]);
  for (const t of times) for (const x of [t - w + 1, t + 1, t]) if (x > s - w && x <= s) starts.add(x);
  let most = 0;
  for (const x of starts) {
    let n = 0;
    for (const t of times) if (t >= x && t < x + w) n++;
    most = Math.max(most, n);
  }
  return most;
}

interface Scheduled {
  touchId: string;
  at: number;
  channel: string;
}

/** The first cap (in the configured order) or the minimum gap that refuses a touch on `channel` at `at`. */
function capOrGap(policy: RefPolicy, touches: readonly Scheduled[], channel: string, at: number): string | null {
  for (const cap of policy.caps) {
    if (cap.channel !== null && cap.channel !== channel) continue;
    const times = touches.filter((t) => cap.channel === null || t.channel === cap.channel).map((t) => t.at);
    if (busiestWindowHolding(times, at, cap.withinMs) >= cap.max) return cap.channel !== null ? 'cap_channel' : 'cap_all_channels';
  }
  if (policy.minGapMs !== null && touches.some((t) => Math.abs(t.at - at) < policy.minGapMs!)) return 'min_gap';
  return null;
}

// ---- one user's journey through the calls ----

type Wait =
  | { kind: 'absence'; journeyId: string; dueAt: number; key: string; occurrence: string; startedAt: number }
  | { kind: 'step'; journeyId: string; dueAt: number; step: number };

interface Planned {
  journey: RefJourney;
  step: number;
  entry: RefEntry & { touches: RefTouch[] };
  sendAt: number;
}

export function simulateUser(rules: RefRules, userId: string, calls: readonly RefCall[]): RefUserResult {
  const out: RefUserResult = {
    userId,
    touches: [],
    skips: [],
    cancellations: [],
    entered: [],
    conversions: [],
    lateFollowUps: [],
    fired: [],
    pending: [],
    consentLog: [],
    exitLog: [],
    final: { entries: {}, history: [], consent: {} },
    notes: [],
  };
  const { policy } = rules;
  const entries = new Map<string, RefEntry & { touches: RefTouch[] }>();
  let waits: Wait[] = [];
  let history: Scheduled[] = [];
  const consent: Record<string, { granted: boolean; at: number }> = {};
  const firstTimeSeen = new Set<string>();
  const firedAbsences: Array<{ journeyId: string; key: string; dueAt: number }> = [];
  const counterTimes = new Map<string, number[]>();
  let tz = '';

  const zone = () => (tz !== '' ? tz : rules.reportingTimeZone);
  const liveTouch = (t: RefTouch) => (t.outcome === 'send' || t.outcome === 'defer') && t.cancelledAt === null;
  const keyOf = (by: string | null, e: RefEvent): string | null => (by === null ? '' : Object.prototype.hasOwnProperty.call(e.props, by) ? e.props[by]! : null);

  function enter(j: RefJourney, occurrence: string, triggerEventId: string, at: number, now: number, planned: Planned[]): void {
    const prior = entries.get(j.id);
    const plannedPending = planned.some((p) => p.journey.id === j.id && p.sendAt > now);
    const inProgress =
      prior !== undefined &&
      prior.exitedAt === undefined &&
      (prior.touches.some((t) => liveTouch(t) && t.sendAt > now) || waits.some((w) => w.kind === 'step' && w.journeyId === j.id));
    let refusal: string | null = null;
    if (plannedPending || inProgress) refusal = 'already_in_journey';
    else if (prior !== undefined && j.reEntry.kind === 'never') refusal = 'reentry_never';
    else if (prior !== undefined && j.reEntry.kind === 'cooldown' && at - prior.at < j.reEntry.ms) refusal = 'reentry_cooldown';
    if (refusal !== null) {
      out.skips.push({ journeyId: j.id, reason: refusal, occurrence });
      return;
    }
    const { group, variant } = refAssignment(rules, j, userId);
    const entry = { at, occurrence, triggerEventId, group, variant, touches: [] as RefTouch[] };
    entries.set(j.id, entry);
    planStep(j, entry, 0, at + j.steps[0]!.delayMs, now, planned);
  }

  /** A step is sent at its time, never in the past; the next step waits until its own time. */
  function planStep(j: RefJourney, entry: Planned['entry'], step: number, time: number, now: number, planned: Planned[]): void {
    planned.push({ journey: j, step, entry, sendAt: Math.max(time, now) });
    const next = j.steps[step + 1];
    if (next !== undefined) waits.push({ kind: 'step', journeyId: j.id, step: step + 1, dueAt: time + next.delayMs });
  }

  function gateChannel(j: RefJourney, channel: string, sendAt: number, sameCall: readonly Scheduled[]): { ok: boolean; reason: string; sendAt: number } {
    const own = consent[channel];
    const granted = own !== undefined ? own.granted : (policy.consentByChannel[channel] ?? policy.consentDefault);
    if (!granted) return { ok: false, reason: own !== undefined ? 'opted_out' : 'no_consent', sendAt };
    let at = sendAt;
    let reason = 'sent';
    const q = policy.quietHours;
    if (q !== null && (q.channels.length === 0 || q.channels.includes(channel)) && inQuietHours(q, at, zone())) {
      if ((j.quietHours ?? q.action) === 'drop') return { ok: false, reason: 'quiet_hours', sendAt };
      at = nextLocal(at, q.toMinute, zone());
      reason = 'quiet_hours_deferred';
    }
    if (!j.ignoreCaps) {
      const refused = capOrGap(policy, [...history, ...sameCall], channel, at);
      if (refused !== null) {
        // Only the touches decided together (higher priority first) stand in the way.
        const alone = sameCall.length > 0 && capOrGap(policy, history, channel, at) === null;
        return { ok: false, reason: alone ? 'priority_conflict' : refused, sendAt };
      }
    }
    return { ok: true, reason, sendAt: at };
  }

  function gateAll(planned: Planned[], now: number): void {
    const order = [...planned].sort((a, b) => b.journey.priority - a.journey.priority || (a.journey.id < b.journey.id ? -1 : a.journey.id > b.journey.id ? 1 : 0) || a.step - b.step);
    const sameCall: Scheduled[] = [];
    for (const p of order) {
      const j = p.journey;
      const step = j.steps[p.step]!;
      const channels = step.channels ?? j.channels;
      const variantTemplate = j.variants.find((v) => v.id === p.entry.variant)?.template;
      const touch: RefTouch = {
        touchId: refTouchId(j.id, step.id, userId, p.entry.occurrence),
        userId,
        journeyId: j.id,
        stepId: step.id,
        channel: channels[0]!,
        template: step.template ?? variantTemplate ?? j.template,
        variant: p.entry.variant,
        group: p.entry.group,
        occurrence: p.entry.occurrence,
        triggerEventId: p.entry.triggerEventId,
        reason: '',
        outcome: 'suppress',
        sendAt: p.sendAt,
        decidedAt: now,
        cancelledAt: null,
      };
      if (p.entry.group !== 'variant') {
        touch.reason = p.entry.group;
      } else {
        let decided = false;
        for (const channel of channels) {
          const g = gateChannel(j, channel, p.sendAt, sameCall);
          if (g.ok) {
            Object.assign(touch, { channel, reason: g.reason, sendAt: g.sendAt });
            decided = true;
            break;
          }
          if (touch.reason === '') touch.reason = g.reason; // the first channel's refusal is the reason
        }
        if (!decided) touch.channel = channels[0]!;
      }
      touch.outcome = TOUCH_OUTCOME[touch.reason]!;
      out.touches.push(touch);
      p.entry.touches.push(touch);
      if (p.step === 0) out.entered.push({ journeyId: j.id, group: p.entry.group, variant: p.entry.variant });
      if (liveTouch(touch) && !j.ignoreCaps) sameCall.push({ touchId: touch.touchId, at: touch.sendAt, channel: touch.channel });
    }
    history.push(...sameCall);
  }

  for (const call of calls) {
    const { now, event: e } = call;
    const planned: Planned[] = [];
    const countFires = new Set<string>();
    if (e !== null) {
      if (e.tz !== '') tz = e.tz;
      // Behaviour counters: "takes the count within W to atLeast" (before < atLeast <= after).
      for (const j of rules.journeys) {
        const t = j.trigger;
        if (t.type !== 'count' || !refMatches(t.match, e)) continue;
        const times = counterTimes.get(j.id) ?? [];
        const inWindow = () => times.filter((x) => x > e.timeMs - t.withinMs && x <= e.timeMs).length;
        const before = inWindow();
        times.push(e.timeMs);
        counterTimes.set(j.id, times);
        if (before < t.atLeast && inWindow() >= t.atLeast) countFires.add(j.id);
      }
      // Consent choices ("a choice older than the recorded one is ignored").
      for (const rule of policy.consentEvents) {
        if (!refMatches(rule.match, e)) continue;
        const channel = rule.channel ?? (rule.channelProp !== undefined ? e.props[rule.channelProp] : undefined);
        let granted = rule.grant;
        if (granted === undefined && rule.grantProp !== undefined) {
          const v = (e.props[rule.grantProp] ?? '').trim().toLowerCase();
          granted = ['true', 'yes', '1', 'granted', 'opt_in'].includes(v) ? true : ['false', 'no', '0', 'denied', 'opt_out'].includes(v) ? false : undefined;
        }
        if (channel === undefined || granted === undefined) continue;
        if (consent[channel] !== undefined && consent[channel]!.at > e.timeMs) continue;
        consent[channel] = { granted, at: e.timeMs };
        out.consentLog.push({ now, channel, granted, at: e.timeMs });
      }
      // Exits: the journey ends for the user; later steps and touches not yet due are cancelled,
      // and absence waits end. An exit from before the entry does not end it.
      for (const j of rules.journeys) {
        if (!j.exitOn.some((f) => refMatches(f, e))) continue;
        const entry = entries.get(j.id);
        const inEntry = entry !== undefined && entry.exitedAt === undefined && e.timeMs >= entry.at;
        waits = waits.filter((w) => {
          const ends = w.journeyId === j.id && ((w.kind === 'step' && inEntry) || w.kind === 'absence');
          if (ends) out.cancellations.push({ journeyId: j.id, reason: 'exit', kind: w.kind === 'step' ? 'step_wait' : 'absence_wait' });
          return !ends;
        });
        if (!inEntry) continue;
        for (const t of entry.touches) {
          if (!liveTouch(t) || t.sendAt <= now) continue;
          t.cancelledAt = now;
          out.cancellations.push({ journeyId: j.id, reason: 'exit', kind: 'touch' });
          history = history.filter((h) => h.touchId !== t.touchId);
        }
        entry.exitedAt = e.timeMs;
        out.exitLog.push({ now, journeyId: j.id });
      }
      // The awaited event within the window (by event time) ends the wait, paired on `by`.
      for (const j of rules.journeys) {
        const t = j.trigger;
        if (t.type !== 'notFollowedBy' || !refMatches(t.then, e)) continue;
        const key = keyOf(t.by, e);
        if (key === null) continue;
        waits = waits.filter((w) => {
          const ends = w.kind === 'absence' && w.journeyId === j.id && w.key === key && e.timeMs >= w.startedAt && e.timeMs <= w.dueAt;
          if (ends) out.cancellations.push({ journeyId: j.id, reason: 'followed_by', kind: 'absence_wait' });
          return !ends;
        });
      }
    }

    // Waits due by the wall clock fire, oldest first.
    const due = waits.filter((w) => w.dueAt <= now).sort((a, b) => a.dueAt - b.dueAt);
    waits = waits.filter((w) => w.dueAt > now);
    for (const w of due) {
      const j = rules.journeys.find((x) => x.id === w.journeyId)!;
      out.fired.push({ journeyId: j.id, kind: w.kind, dueAt: w.dueAt, firedAt: now });
      if (now - w.dueAt > rules.maxTriggerAgeMs) out.notes.push(`${userId}: a ${w.kind} wait of ${j.id} fired ${now - w.dueAt} ms late (stale_timer)`);
      if (w.kind === 'absence') {
        firedAbsences.push({ journeyId: j.id, key: w.key, dueAt: w.dueAt });
        enter(j, w.occurrence, '', w.dueAt, now, planned);
      } else {
        const entry = entries.get(j.id);
        if (entry === undefined || entry.exitedAt !== undefined) continue;
        planStep(j, entry, w.step, w.dueAt, now, planned);
      }
    }

    if (e !== null) {
      // A follow-up to an absence that already fired is late: counted once.
      for (const j of rules.journeys) {
        const t = j.trigger;
        if (t.type !== 'notFollowedBy' || !refMatches(t.then, e)) continue;
        const key = keyOf(t.by, e);
        const i = firedAbsences.findIndex((f) => f.journeyId === j.id && f.key === key && e.timeMs > f.dueAt);
        if (i < 0) continue;
        const [f] = firedAbsences.splice(i, 1);
        // The documentation does not say for how long a fired wait is remembered: keep clear of it.
        if (now - f!.dueAt >= t.withinMs) out.notes.push(`${userId}: late follow-up of ${j.id} arrived ${now - f!.dueAt} ms after the deadline (beyond one window)`);
        out.lateFollowUps.push({ journeyId: j.id, key: f!.key });
      }
      // Conversions: within the window of entering, once per entry, holdouts too.
      for (const j of rules.journeys) {
        const entry = entries.get(j.id);
        if (j.conversion === null || entry === undefined || entry.convertedAt !== undefined) continue;
        if (e.timeMs < entry.at || e.timeMs - entry.at > j.conversion.withinMs || !refMatches(j.conversion.match, e)) continue;
        entry.convertedAt = e.timeMs;
        out.conversions.push({ journeyId: j.id, group: entry.group, variant: entry.variant });
      }
      // The event's own triggers.
      const stale = now - e.timeMs > rules.maxTriggerAgeMs;
      for (const j of rules.journeys) {
        const t = j.trigger;
        let fires = false;
        if (t.type === 'event') fires = refMatches(t.match, e);
        else if (t.type === 'count') fires = countFires.has(j.id);
        else if (t.type === 'firstTime') {
          fires = refMatches(t.match, e) && !firstTimeSeen.has(j.id);
          if (fires) firstTimeSeen.add(j.id);
        } else if (t.type === 'notFollowedBy' && refMatches(t.first, e)) {
          const key = keyOf(t.by, e);
          if (key === null) continue;
          if (stale) out.skips.push({ journeyId: j.id, reason: 'stale_event', occurrence: e.eventId });
          // A second start of a running flow keeps the first deadline.
          else if (!waits.some((w) => w.kind === 'absence' && w.journeyId === j.id && w.key === key)) {
            waits.push({ kind: 'absence', journeyId: j.id, dueAt: e.timeMs + t.withinMs, key, occurrence: e.eventId, startedAt: e.timeMs });
          }
        }
        if (!fires) continue;
        if (stale) out.skips.push({ journeyId: j.id, reason: 'stale_event', occurrence: e.eventId });
        else enter(j, e.eventId, e.eventId, e.timeMs, now, planned);
      }
    }
    if (planned.length > 0) gateAll(planned, now);
  }

  out.pending = waits.map((w) => ({ journeyId: w.journeyId, kind: w.kind, dueAt: w.dueAt }));
  for (const [id, e] of entries) {
    const { touches: _t, ...entry } = e;
    out.final.entries[id] = entry;
  }
  out.final.history = history.map((h) => ({ ...h })).sort((a, b) => a.at - b.at || (a.touchId < b.touchId ? -1 : 1));
  out.final.consent = { ...consent };
  return out;
}

// ---- the send-time re-check and per-journey counts ----

/**
 * What happens to a touch that was sent or deferred when its job runs: cancelled by an exit,
 * suppressed because consent is gone by then, or delivered. `runAt` is when the worker took the
 * job, `doneBy` when the re-check was over at the latest (the request's arrival, or the job's
 * end). A consent change decided within `marginMs` before `runAt` (its commit may land after the
 * re-check read the state) or before `doneBy`, or an exit decided after the touch was due and
 * before `doneBy` (the documentation cancels touches "not yet due" only), is too close to call:
 * a note.
 */
export function sendTimeOutcome(rules: RefRules, user: RefUserResult, t: RefTouch, runAt: number, doneBy = runAt, marginMs = 1_000): { outcome: 'deliver' | 'cancelled' | 'no_consent_at_send'; note?: string } {
  if (t.cancelledAt !== null) return { outcome: 'cancelled' };
  const close = user.consentLog.find((c) => c.channel === t.channel && c.now > runAt - marginMs && c.now <= doneBy);
  const exitClose = user.exitLog.find((x) => x.journeyId === t.journeyId && x.now >= t.sendAt && x.now <= doneBy);
  const note = close !== undefined ? `${t.touchId}: a consent change decided at ${close.now} is too close to the send (${runAt}..${doneBy})` : exitClose !== undefined ? `${t.touchId}: an exit decided at ${exitClose.now} came after the touch was due (${t.sendAt}) and before its send ended (${doneBy})` : undefined;
  let choice: boolean | undefined;
  for (const c of user.consentLog) if (c.channel === t.channel && c.now < runAt) choice = c.granted;
  const granted = choice ?? rules.policy.consentByChannel[t.channel] ?? rules.policy.consentDefault;
  return { outcome: granted ? 'deliver' : 'no_consent_at_send', ...(note !== undefined ? { note } : {}) };
}

export interface RefJourneyStats {
  decisions: Record<string, number>;
  reasons: Record<string, number>;
  skipped: Record<string, number>;
  cancelled: Record<string, number>;
  lateFollowUps: number;
  variants: Record<string, { users: number; conversions: number }>;
  holdout: { users: number; conversions: number };
  globalHoldout: { users: number; conversions: number };
}

export function journeyCounts(rules: RefRules, users: readonly RefUserResult[]): Map<string, RefJourneyStats> {
  const stats = new Map<string, RefJourneyStats>();
  for (const j of rules.journeys) {
    stats.set(j.id, { decisions: {}, reasons: {}, skipped: {}, cancelled: {}, lateFollowUps: 0, variants: {}, holdout: { users: 0, conversions: 0 }, globalHoldout: { users: 0, conversions: 0 } });
  }
  const bump = (r: Record<string, number>, k: string) => (r[k] = (r[k] ?? 0) + 1);
  const groupOf = (s: RefJourneyStats, group: Group, variant: string) => {
    if (group === 'holdout') return s.holdout;
    if (group === 'global_holdout') return s.globalHoldout;
    const k = variant === '' ? 'default' : variant;
    return (s.variants[k] ??= { users: 0, conversions: 0 });
  };
  for (const u of users) {
    for (const t of u.touches) {
      const s = stats.get(t.journeyId)!;
      bump(s.decisions, t.outcome);
      bump(s.reasons, t.reason);
    }
    for (const k of u.skips) bump(stats.get(k.journeyId)!.skipped, k.reason);
    for (const c of u.cancellations) bump(stats.get(c.journeyId)!.cancelled, c.reason);
    for (const l of u.lateFollowUps) stats.get(l.journeyId)!.lateFollowUps++;
    for (const e of u.entered) groupOf(stats.get(e.journeyId)!, e.group, e.variant).users++;
    for (const c of u.conversions) groupOf(stats.get(c.journeyId)!, c.group, c.variant).conversions++;
  }
  return stats;
}
