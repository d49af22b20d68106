import type { Filter, JourneySpec, RulesSpec } from './rules-spec.js';

/**
 * The journeys an event of one name can concern, per role, in the spec's order (priority). The
 * journey step runs on every event, and most events concern few journeys: a page view can end
 * no journey and trigger one or two, so it should not test every filter of every journey.
 * Streak and stage triggers depend on the user's facts, not the event's name: always listed.
 */
export interface EventPlan {
  exits: readonly JourneySpec[];
  /** notFollowedBy journeys whose `then` can match: the event may end an absence wait. */
  followUps: readonly JourneySpec[];
  /** Inactivity journeys whose activity filter can match: the event pushes the deadline back. */
  inactivity: readonly JourneySpec[];
  conversions: readonly JourneySpec[];
  triggers: readonly JourneySpec[];
  /** Some consent rule can match. */
  consent: boolean;
}

interface Plans {
  byName: ReadonlyMap<string, EventPlan>;
  /** For every name no filter lists: only filters without names can match it. */
  other: EventPlan;
}

// One per compiled spec (frozen, so never stale). Keyed by the names the config lists, so an
// unbounded set of event names in the traffic cannot grow it.
const PLANS = new WeakMap<RulesSpec, Plans>();

export function eventPlan(spec: RulesSpec, name: string): EventPlan {
  let plans = PLANS.get(spec);
  if (plans === undefined) {
    plans = buildPlans(spec);
    PLANS.set(spec, plans);
  }
  return plans.byName.get(name) ?? plans.other;
}

function buildPlans(spec: RulesSpec): Plans {
  const names = new Set<string>();
  const note = (f: Filter | null) => {
    for (const n of f?.names ?? []) names.add(n);
  };
  for (const j of spec.journeys) {
    const t = j.trigger;
    if (t.type === 'event' || t.type === 'count' || t.type === 'firstTime') note(t.match);
    else if (t.type === 'notFollowedBy') (note(t.first), note(t.then));
    else if (t.type === 'inactive') note(t.match);
    for (const f of j.exitOn) note(f);
    note(j.conversion?.match ?? null);
  }
  for (const r of spec.policy.consent.events) note(r.match);
  const byName = new Map<string, EventPlan>();
  for (const n of names) byName.set(n, planFor(spec, (f) => f.names.length === 0 || f.names.includes(n)));
  return { byName, other: planFor(spec, (f) => f.names.length === 0) };
}

/** `can(f)`: a filter that may match the name (the rest of the filter is tested per event). */
function planFor(spec: RulesSpec, can: (f: Filter) => boolean): EventPlan {
  return {
    exits: spec.journeys.filter((j) => j.exitOn.some(can)),
    followUps: spec.journeys.filter((j) => j.trigger.type === 'notFollowedBy' && can(j.trigger.then)),
    inactivity: spec.journeys.filter((j) => j.trigger.type === 'inactive' && (j.trigger.match === null || can(j.trigger.match))),
    conversions: spec.journeys.filter((j) => j.conversion !== null && can(j.conversion.match)),
    triggers: spec.journeys.filter((j) => {
      const t = j.trigger;
      switch (t.type) {
        case 'event':
        case 'count':
        case 'firstTime':
          return can(t.match);
        case 'notFollowedBy':
          return can(t.first);
        case 'streak':
        case 'stage':
          return true;
        case 'inactive':
          return false;
      }
    }),
    consent: spec.policy.consent.events.some((r) => can(r.match)),
  };
}

/**
 * Test seam, not for production callers: a copy of `spec` (the same frozen journeys and policy)
 * whose every event gets the plan listing every journey in every role, with consent on. Each
 * role's code still tests the real filter per event, so `decideJourneys` on this copy decides
 * what the rules say without the index, and tests/unit/event-index.test.ts checks the index
 * against it (the index must only ever be an optimisation). Never used by src/.
 */
export function specWithFullPlanForTests(spec: RulesSpec): RulesSpec {
  const copy = Object.freeze({ ...spec });
  const all = spec.journeys;
  const full: EventPlan = { exits: all, followUps: all, inactivity: all, conversions: all, triggers: all, consent: true };
  PLANS.set(copy, { byName: new Map(), other: full });
  return copy;
}
