/**
 * The compiled journeys and contact policy: plain, frozen data built once from the config by
 * `compileRules`. Every decision function takes it as an argument, so tests build one by hand
 * and nothing in rules/ reads the config or the clock itself.
 */

export interface NumberRange {
  gt?: number;
  gte?: number;
  lt?: number;
  lte?: number;
}

export type PropTest =
  | { kind: 'equals'; value: string }
  | { kind: 'in'; values: readonly string[] }
  | { kind: 'range'; range: NumberRange }
  | { kind: 'exists'; present: boolean };

/** Which events match: every listed part must hold; an empty list matches anything. */
export interface Filter {
  names: readonly string[];
  channels: readonly string[];
  props: readonly { key: string; test: PropTest }[];
  value: NumberRange | null;
}

export type Trigger =
  /** An event matching the filter. */
  | { type: 'event'; match: Filter }
  /** The behaviour counter reaches `atLeast` matching events within `withinMs` with this event. */
  | { type: 'count'; counter: string; match: Filter; atLeast: number; withinMs: number }
  /** No event matching `match` (any event when null) for `forMs`: fires on time, by timer. */
  | { type: 'inactive'; forMs: number; match: Filter | null }
  /** `first` not followed by `then` within `withinMs`, paired on the prop `by` when set. */
  | { type: 'notFollowedBy'; first: Filter; then: Filter; withinMs: number; by: string | null }
  /** The behaviour streak's current run reaches `reaches` days. */
  | { type: 'streak'; streak: string; reaches: number }
  /** The lifecycle stage changes from one of `from` (any when empty) to one of `to` (any when empty). */
  | { type: 'stage'; from: readonly string[]; to: readonly string[] }
  /** The first event matching the filter since the journey exists for the user. */
  | { type: 'firstTime'; match: Filter };

export type Condition = { not: boolean } & (
  | { kind: 'stage'; stages: readonly string[] }
  | { kind: 'trait'; trait: string; in: readonly string[] | null; exists: boolean | null }
  | { kind: 'counter'; counter: string; withinMs: number; atLeast: number | null; atMost: number | null }
  | { kind: 'sum'; sum: string; atLeast: number | null; atMost: number | null }
  | { kind: 'streak'; streak: string; atLeast: number | null; atMost: number | null }
  /** Sign-ups from the user's sign-up device within `withinMs` of their own (UserFacts.deviceSignups). */
  | { kind: 'deviceSignups'; deviceSignups: string; withinMs: number; atLeast: number | null; atMost: number | null }
);

/** When a step is sent, relative to its base time (the trigger, or the previous step's send time). */
export interface StepTiming {
  delayMs: number;
  /** Then the next such local time: minutes after local midnight, or the user's usual active hour. */
  at: number | 'usualActiveHour' | null;
  /** With usualActiveHour: minutes after midnight used while the usual hour is unknown (null = no wait). */
  fallbackAt: number | null;
}

export interface StepSpec {
  id: string;
  timing: StepTiming;
  /** Channels in order of preference: the touch goes to the first the policy allows. */
  channels: readonly string[];
  /** Null: the variant's template, else the journey's. */
  template: string | null;
}

export interface VariantSpec {
  id: string;
  weight: number;
  template: string | null;
}

export interface BudgetSpec {
  total: number | null;
  perDay: number | null;
  costPerTouch: number;
}

export interface JourneySpec {
  id: string;
  description: string;
  priority: number;
  trigger: Trigger;
  conditions: readonly Condition[];
  exitOn: readonly Filter[];
  reEntry: { kind: 'never' } | { kind: 'cooldown'; ms: number };
  template: string;
  /** Trait names copied into the touch's attributes: the only user data a payload carries. */
  attributes: readonly string[];
  steps: readonly StepSpec[];
  variants: readonly VariantSpec[];
  /** Share of users held out, 0..0.9. */
  holdout: number;
  useGlobalHoldout: boolean;
  conversion: { match: Filter; withinMs: number } | null;
  budget: BudgetSpec | null;
  quietHours: 'defer' | 'drop' | null;
  ignoreCaps: boolean;
}

export interface CapSpec {
  name: string;
  /** Empty: every channel together (a cross-channel cap). */
  channels: readonly string[];
  max: number;
  window: { kind: 'rolling'; ms: number } | { kind: 'calendar'; period: 'day' | 'week' | 'month' };
}

export interface ConsentEventSpec {
  match: Filter;
  channel: { kind: 'fixed'; channel: string } | { kind: 'prop'; prop: string };
  grant: { kind: 'fixed'; grant: boolean } | { kind: 'prop'; prop: string };
}

export interface PolicySpec {
  consent: {
    defaultGranted: boolean;
    channelDefaults: Readonly<Record<string, boolean>>;
    events: readonly ConsentEventSpec[];
  };
  quietHours: { fromMinute: number; toMinute: number; action: 'defer' | 'drop'; channels: readonly string[] } | null;
  caps: readonly CapSpec[];
  minGapMs: number | null;
  globalHoldout: number;
  holdoutSalt: string;
}

export interface RulesSpec {
  /** Sorted by priority, highest first, then by id: the order decisions are gated in. */
  journeys: readonly JourneySpec[];
  policy: PolicySpec;
  /** The zone used for users whose own zone is unknown, and for budget days. */
  reportingTimeZone: string;
  /** Events older than this by the wall clock trigger nothing; timers overdue by more fire nothing. */
  maxTriggerAgeMs: number;
}
