import type { AppEvent } from '../contract/event.js';
import { decideJourneys } from '../rules/decide-journeys.js';
import type { JourneyInput, JourneyStepResult, TouchDecision } from '../rules/decisions.js';
import type { RulesSpec } from '../rules/rules-spec.js';
import type { DeviceSignupFacts, PriorFacts, UserFacts } from '../rules/user-facts.js';
import { deviceSetId, type DeviceSignupView } from './device-signups.js';
import { encodeOutboxEntry, type OutboxEntry } from '../touches/outbox-entry.js';
import type { TouchJob } from '../touches/touch-job.js';
import { localHour } from '../time/calendar.js';
import { windowSum } from './windows.js';
import type { StateSpec } from './spec.js';
import type { UserState } from './user-state.js';

/**
 * The state step's edge to the rules: builds the plain facts the rules read from a user's
 * state, runs the journey decision, and turns its result into what the commit writes — the
 * new journey state, outbox entries for touches to send, and per-journey counters for stats.
 */

/** Counter hash (per lane) of one journey's decisions, conversions and spend. */
export const journeyHash = (journeyId: string): string => `j:${journeyId}`;

/**
 * The facts before an event, kept while the state step applies it (the step may change the state
 * in place): only what the rules read of them (PriorFacts). The counter and streak maps are
 * copied, not their entries: applying the event replaces entries, it never changes one. This
 * runs for every event, so it copies nothing else (the traits, and the sums where configured,
 * were copied for no reader).
 */
export function factsOf(s: UserState): PriorFacts {
  return { stage: s.stage, counters: { ...s.counters }, streaks: { ...s.streaks } };
}

/** The facts as they are now, read during one journey decision only: nothing copied. */
function currentFacts(s: UserState, now: number, spec: StateSpec, devices: DeviceSignupView | undefined): UserFacts {
  return new Facts(s, now, spec, devices);
}

const NO_DEVICE_SIGNUPS: Readonly<Record<string, DeviceSignupFacts>> = Object.freeze({});

/** The user's sign-ups with their devices' sign-up times, where the lane read them. */
function deviceSignupFacts(signups: UserState['signups'], spec: StateSpec, devices: DeviceSignupView | undefined): Readonly<Record<string, DeviceSignupFacts>> {
  if (signups === undefined || devices === undefined) return NO_DEVICE_SIGNUPS;
  const out: Record<string, DeviceSignupFacts> = {};
  for (const d of spec.deviceSignups) {
    const own = signups[d.name];
    const times = own !== undefined ? devices.times(deviceSetId(d.name, own[0])) : undefined;
    if (own !== undefined && times !== undefined) out[d.name] = { at: own[1], times };
  }
  return out;
}

/** A class, not an object literal with a getter: V8 builds literals with accessors slowly. */
class Facts implements UserFacts {
  readonly firstSeen: number;
  readonly lastSeen: number;
  readonly stage: string;
  readonly stageSince: number;
  readonly tz: string;
  readonly traits: Readonly<Record<string, string>>;
  readonly counters: Readonly<Record<string, readonly number[]>>;
  readonly streaks: Readonly<Record<string, { readonly current: number; readonly last: number }>>;
  readonly activeHours: readonly number[] | null;
  private readonly buckets: UserState['sums'];
  private computed: Record<string, number> | undefined;
  private readonly signups: UserState['signups'];
  private devicesRead: Readonly<Record<string, DeviceSignupFacts>> | undefined;

  constructor(
    s: UserState,
    private readonly now: number,
    private readonly spec: StateSpec,
    private readonly devices: DeviceSignupView | undefined,
  ) {
    this.firstSeen = s.firstSeen;
    this.lastSeen = s.lastSeen;
    this.stage = s.stage;
    this.stageSince = s.stageSince;
    this.tz = s.tz;
    this.traits = s.traits;
    this.counters = s.counters;
    this.streaks = s.streaks;
    this.activeHours = s.hours ?? null;
    this.signups = s.signups;
    this.devicesRead = undefined;
    this.buckets = s.sums;
    this.computed = undefined;
  }

  get sums(): Readonly<Record<string, number>> {
    if (this.computed === undefined) {
      const out: Record<string, number> = {};
      for (const sum of this.spec.sums) out[sum.name] = windowSum(this.buckets[sum.name] ?? [], this.now, sum.windowMs, sum.bucketMs);
      this.computed = out;
    }
    return this.computed;
  }

  /** Built when a condition reads it (few journeys do), not for every event of the batch. */
  get deviceSignups(): Readonly<Record<string, DeviceSignupFacts>> {
    this.devicesRead ??= deviceSignupFacts(this.signups, this.spec, this.devices);
    return this.devicesRead;
  }
}

/**
 * Counts the event in the user's local hour-of-day histogram (24 counts: bounded). `owned`: the
 * histogram is the caller's to change in place (else it is copied: a loaded state's may be
 * shared with the caller). The facts before the event do not keep the histogram, so they do not
 * see the change.
 */
export function recordActiveHour(s: UserState, t: number, reportingTimeZone: string, owned = false): void {
  const hours = s.hours?.length === 24 ? (owned ? s.hours : [...s.hours]) : new Array<number>(24).fill(0);
  const h = localHour(t, s.tz !== '' ? s.tz : reportingTimeZone);
  hours[h] = (hours[h] ?? 0) + 1;
  s.hours = hours;
}

export interface JourneyEffects {
  outbox: readonly OutboxEntry[];
  /** hash suffix -> field -> delta, merged into the step's counters. */
  counters: ReadonlyArray<readonly [string, string, number]>;
  nextDueAt: number | null;
}

/** Runs the rules for one event (or a timer tick) and stores the new journey state in `s`. */
export function runJourneys(
  rules: RulesSpec,
  userId: string,
  s: UserState,
  before: PriorFacts | null,
  event: AppEvent | null,
  now: number,
  spec: StateSpec,
  devices?: DeviceSignupView,
  /** The caller may have `s.journeys` changed in place (nobody else holds it). */
  journeysOwned = false,
): JourneyEffects {
  const input: JourneyInput = { userId, now, before, after: currentFacts(s, now, spec, devices), event, state: s.journeys ?? null, owned: journeysOwned };
  const budgets = spec.budgets?.remaining();
  if (budgets !== undefined) input.budgets = budgets;
  const result = decideJourneys(rules, input);
  s.journeys = result.state;
  return effectsOf(rules, result);
}

const NO_OUTBOX: readonly OutboxEntry[] = Object.freeze([]);
const NO_COUNTS: ReadonlyArray<[string, string, number]> = Object.freeze([]);

function effectsOf(rules: RulesSpec, r: JourneyStepResult): JourneyEffects {
  // Most events decide nothing: no lists for them (this runs for every event).
  if (r.touches.length + r.skipped.length + r.cancellations.length + r.conversions.length + r.lateFollowUps.length === 0) {
    return { outbox: NO_OUTBOX, counters: NO_COUNTS, nextDueAt: r.nextDueAt };
  }
  const out = { outbox: [] as OutboxEntry[], counters: [] as Array<[string, string, number]>, nextDueAt: r.nextDueAt };
  for (const t of r.touches) {
    count(out, t.journeyId, `outcome:${t.outcome}`);
    count(out, t.journeyId, `reason:${t.reason}`);
    // Intent to treat: a user counts in their group from the entry's first step decision,
    // whether or not a touch is ever delivered.
    if (isFirstStep(rules, t)) count(out, t.journeyId, `entered:${t.group}:${t.variant}`);
    if (t.outcome === 'send' || t.outcome === 'defer') {
      out.outbox.push(encodeOutboxEntry(jobOf(t)));
      // What the decision expects to charge (the stats' costDecided); the ledger charges at send.
      if (t.cost > 0) count(out, t.journeyId, 'cost', t.cost);
    }
  }
  for (const k of r.skipped) count(out, k.journeyId, `skipped:${k.reason}`);
  for (const c of r.cancellations) count(out, c.journeyId, `cancelled:${c.reason}`);
  for (const c of r.conversions) count(out, c.journeyId, `converted:${c.group}:${c.variant}`);
  for (const l of r.lateFollowUps) count(out, l.journeyId, 'late_follow_up');
  return out;
}

function count(out: { counters: Array<[string, string, number]> }, journeyId: string, field: string, delta = 1): void {
  out.counters.push([journeyHash(journeyId), field, delta]);
}

function isFirstStep(rules: RulesSpec, t: TouchDecision): boolean {
  const j = rules.journeys.find((x) => x.id === t.journeyId);
  return j !== undefined && j.steps[0]?.id === t.stepId;
}

/** The BullMQ job of a touch (DESIGN §2.2): only the template's attributes, no other user data. */
export function jobOf(t: TouchDecision): TouchJob {
  return {
    touchId: t.touchId,
    userId: t.userId,
    journeyId: t.journeyId,
    stepId: t.stepId,
    channel: t.channel,
    template: t.template,
    variant: t.variant,
    triggerEventId: t.triggerEventId,
    triggeredAt: t.triggeredAt,
    sendAt: t.sendAt,
    attributes: t.attributes,
  };
}
