import type { AppEvent } from '../../src/contract/event.js';
import { decideJourneys } from '../../src/rules/decide-journeys.js';
import { deepFreeze } from '../../src/rules/compile-rules.js';
import type { JourneyInput, JourneyStepResult } from '../../src/rules/decisions.js';
import type { JourneyUserState } from '../../src/rules/journey-state.js';
import type { BudgetRemaining } from '../../src/rules/policy-gate.js';
import type { Filter, JourneySpec, PolicySpec, RulesSpec } from '../../src/rules/rules-spec.js';
import type { UserFacts } from '../../src/rules/user-facts.js';

/**
 * Hand-built rules and a small user simulator for the rules' unit tests: the spec is written
 * out as plain data (not compiled from YAML), so these tests check the rules, not the loader.
 * Times are virtual: every call passes `now`.
 */

export const MIN = 60_000;
export const HOUR = 3_600_000;
export const DAY = 86_400_000;
/** 2026-11-02 00:00 UTC, a Monday; 08:00 in Asia/Shanghai. */
export const T0 = Date.UTC(2026, 10, 2);

export function match(names: string | string[] = [], more: Partial<Filter> = {}): Filter {
  return { names: typeof names === 'string' ? [names] : names, channels: [], props: [], value: null, ...more };
}

export function journey(over: Partial<JourneySpec> & Pick<JourneySpec, 'id' | 'trigger'>): JourneySpec {
  return {
    description: '',
    priority: 0,
    conditions: [],
    exitOn: [],
    reEntry: { kind: 'cooldown', ms: 1 },
    template: `${over.id}_tpl`,
    attributes: [],
    steps: [{ id: 'main', timing: { delayMs: 0, at: null, fallbackAt: null }, channels: ['push'], template: null }],
    variants: [],
    holdout: 0,
    useGlobalHoldout: true,
    conversion: null,
    budget: null,
    quietHours: null,
    ignoreCaps: false,
    ...over,
  };
}

export function policy(over: Partial<PolicySpec> = {}): PolicySpec {
  return {
    consent: { defaultGranted: true, channelDefaults: {}, events: [] },
    quietHours: null,
    caps: [],
    minGapMs: null,
    globalHoldout: 0,
    holdoutSalt: 'test',
    ...over,
  };
}

/**
 * Deep-frozen, as compileRules leaves a compiled spec: the rules cache what they derive from a
 * spec by its identity (event-index.ts, decide-journeys.ts), so a spec changed after its first use
 * would be decided from stale derivations. Frozen, a test that assigns to one fails loudly instead
 * (the contents of its Sets are not frozen).
 */
export function rules(journeys: JourneySpec[], over: Partial<RulesSpec> = {}): RulesSpec {
  const sorted = [...journeys].sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : 1));
  return deepFreeze({ journeys: sorted, policy: policy(), reportingTimeZone: 'Asia/Shanghai', maxTriggerAgeMs: HOUR, ...over });
}


export function facts(over: Partial<UserFacts> = {}): UserFacts {
  return {
    firstSeen: T0 - 30 * DAY,
    lastSeen: T0,
    stage: 'active',
    stageSince: T0 - 20 * DAY,
    tz: 'Asia/Shanghai',
    traits: {},
    counters: {},
    sums: {},
    streaks: {},
    activeHours: null,
    deviceSignups: {},
    ...over,
  };
}

let seq = 0;
export function event(name: string, timeMs: number, over: Partial<AppEvent> = {}): AppEvent {
  return { eventId: `e${++seq}`, userId: 'u1', name, timeMs, channel: 'app', props: {}, value: 0, tz: 'Asia/Shanghai', deviceId: '', sentMs: 0, ...over };
}

/**
 * A user fed events and timer ticks in order, keeping the journey state between calls the way
 * the state step will. `facts` is rebuilt by the test when a trigger needs it.
 */
export class SimUser {
  state: JourneyUserState | null = null;
  facts: UserFacts;
  readonly results: JourneyStepResult[] = [];
  budgets: Map<string, BudgetRemaining> | undefined;
  /** False until the first event of a user never seen before: that event has no `before`. */
  private seen: boolean;

  constructor(
    readonly spec: RulesSpec,
    readonly userId = 'u1',
    initial: Partial<UserFacts> = {},
    opts: { newUser?: boolean } = {},
  ) {
    this.facts = facts(initial);
    this.seen = !opts.newUser;
  }

  /** An event at `e.timeMs`, decided at `now` (default: the event time). `after` updates the facts. */
  event(e: AppEvent, now = e.timeMs, after: Partial<UserFacts> = {}): JourneyStepResult {
    const before = this.seen ? this.facts : null;
    this.seen = true;
    this.facts = { ...this.facts, lastSeen: Math.max(this.facts.lastSeen, e.timeMs), ...after };
    return this.run({ before, event: { ...e, userId: this.userId }, now });
  }

  /** A timer tick at `now`; `after` changes the facts (a stage recorded on time). */
  tick(now: number, after: Partial<UserFacts> = {}): JourneyStepResult {
    const before = this.facts;
    this.facts = { ...before, ...after };
    return this.run({ before, event: null, now });
  }

  /** Ticks at every due time up to `until`, as the timer sweep would. */
  runTimersUntil(until: number): JourneyStepResult[] {
    const out: JourneyStepResult[] = [];
    for (;;) {
      const due = this.results.at(-1)?.nextDueAt ?? null;
      if (due === null || due > until) return out;
      out.push(this.tick(due));
    }
  }

  private run(p: { before: UserFacts | null; event: AppEvent | null; now: number }): JourneyStepResult {
    const input: JourneyInput = { userId: this.userId, now: p.now, before: p.before, after: this.facts, event: p.event, state: this.state, ...(this.budgets ? { budgets: this.budgets } : {}) };
    const r = decideJourneys(this.spec, input);
    // The state must survive a JSON round trip: it is stored inside the user's JSON state.
    this.state = JSON.parse(JSON.stringify(r.state)) as JourneyUserState;
    this.results.push(r);
    return r;
  }

  get touches() {
    return this.results.flatMap((r) => r.touches);
  }

  get skipped() {
    return this.results.flatMap((r) => r.skipped);
  }
}
