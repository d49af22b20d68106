import type { NudgeConfig } from '../config/schema.js';
import type { Condition, Filter, JourneySpec, PolicySpec, RulesSpec, Trigger } from './rules-spec.js';

type JourneyConfig = NudgeConfig['journeys'][number];
type MatchConfig = JourneyConfig['exitOn'][number];
type Behaviour = NudgeConfig['behaviour'];

/**
 * Compiles the journeys and policy sections once, at start-up, into frozen plain data. The
 * config is already validated (references included), so this only resolves names: a `count`
 * trigger gets its behaviour counter's filter, so the rules can tell whether an event counts.
 */
export function compileRules(config: NudgeConfig): RulesSpec {
  const journeys = config.journeys.map((j) => compileJourney(j, config.behaviour));
  journeys.sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const spec: RulesSpec = {
    journeys,
    policy: compilePolicy(config.policy),
    reportingTimeZone: config.time.reportingTimeZone,
    maxTriggerAgeMs: config.time.maxTriggerAgeMs,
  };
  return deepFreeze(spec);
}

function compileJourney(j: JourneyConfig, behaviour: Behaviour): JourneySpec {
  return {
    id: j.id,
    description: j.description ?? '',
    priority: j.priority,
    trigger: compileTrigger(j.trigger, behaviour),
    conditions: j.conditions.map((c) => compileCondition(c, behaviour)),
    exitOn: j.exitOn.map(filter),
    reEntry: j.reEntry,
    template: j.template,
    attributes: [...j.attributes],
    steps: j.steps.map((s) => ({
      id: s.id,
      timing: { delayMs: s.delay, at: s.at === 'usual' ? 'usualActiveHour' : (s.at ?? null), fallbackAt: s.fallbackAt ?? null },
      channels: [...(s.channel ?? j.channel)],
      template: s.template ?? null,
    })),
    variants: j.variants.map((v) => ({ id: v.id, weight: v.weight, template: v.template ?? null })),
    holdout: j.holdout,
    useGlobalHoldout: j.useGlobalHoldout,
    conversion: j.conversion ? { match: filter(j.conversion.match), withinMs: j.conversion.within } : null,
    budget: j.budget ? { total: j.budget.total ?? null, perDay: j.budget.perDay ?? null, costPerTouch: j.budget.costPerTouch } : null,
    quietHours: j.quietHours ?? null,
    ignoreCaps: j.ignoreCaps,
  };
}

function compileTrigger(t: JourneyConfig['trigger'], behaviour: Behaviour): Trigger {
  switch (t.type) {
    case 'event':
      return { type: 'event', match: filter(t.match!) };
    case 'count': {
      const counter = behaviour.counters.find((c) => c.name === t.counter)!;
      return { type: 'count', counter: counter.name, match: behaviourFilter(counter.match), atLeast: t.atLeast!, withinMs: t.within ?? counter.withinMs };
    }
    case 'inactive':
      return { type: 'inactive', forMs: t.for!, match: t.match ? filter(t.match) : null };
    case 'notFollowedBy':
      return { type: 'notFollowedBy', first: filter(t.first!), then: filter(t.then!), withinMs: t.within!, by: t.by ?? null };
    case 'streak':
      return { type: 'streak', streak: t.streak!, reaches: t.reaches! };
    case 'stage':
      return { type: 'stage', from: [...(t.from ?? [])], to: [...(t.to ?? [])] };
    case 'firstTime':
      return { type: 'firstTime', match: filter(t.match!) };
  }
}

function compileCondition(c: JourneyConfig['conditions'][number], behaviour: Behaviour): Condition {
  const bounds = { atLeast: c.atLeast ?? null, atMost: c.atMost ?? null };
  if (c.stage !== undefined) return { not: c.not, kind: 'stage', stages: [...c.stage] };
  if (c.trait !== undefined) return { not: c.not, kind: 'trait', trait: c.trait, in: c.in ? [...c.in] : null, exists: c.exists ?? null };
  if (c.counter !== undefined) {
    const withinMs = c.within ?? behaviour.counters.find((x) => x.name === c.counter)!.withinMs;
    return { not: c.not, kind: 'counter', counter: c.counter, withinMs, ...bounds };
  }
  if (c.sum !== undefined) return { not: c.not, kind: 'sum', sum: c.sum, ...bounds };
  if (c.deviceSignups !== undefined) {
    const withinMs = behaviour.deviceSignups.find((d) => d.name === c.deviceSignups)!.withinMs;
    return { not: c.not, kind: 'deviceSignups', deviceSignups: c.deviceSignups, withinMs, ...bounds };
  }
  return { not: c.not, kind: 'streak', streak: c.streak!, ...bounds };
}

function compilePolicy(p: NudgeConfig['policy']): PolicySpec {
  return {
    consent: {
      defaultGranted: p.consent.default === 'granted',
      channelDefaults: Object.fromEntries(Object.entries(p.consent.channels).map(([c, v]) => [c, v === 'granted'])),
      events: p.consent.events.map((e) => ({
        match: filter(e.match),
        channel: e.channel !== undefined ? { kind: 'fixed', channel: e.channel } : { kind: 'prop', prop: e.channelProp! },
        grant: e.grant !== undefined ? { kind: 'fixed', grant: e.grant } : { kind: 'prop', prop: e.grantProp! },
      })),
    },
    quietHours: p.quietHours
      ? { fromMinute: p.quietHours.from, toMinute: p.quietHours.to, action: p.quietHours.action, channels: [...(p.quietHours.channels ?? [])] }
      : null,
    caps: p.caps.map((c) => ({
      name: c.name,
      channels: [...(c.channel ?? [])],
      max: c.max,
      window: c.within !== undefined ? { kind: 'rolling', ms: c.within } : { kind: 'calendar', period: c.per! },
    })),
    minGapMs: p.minGap ?? null,
    globalHoldout: p.globalHoldout,
    holdoutSalt: p.holdoutSalt,
  };
}

function filter(m: MatchConfig): Filter {
  return {
    names: [...m.names],
    channels: [...m.channels],
    props: m.props.map((p) => ({ key: p.key, test: p.test.kind === 'in' ? { kind: 'in', values: [...p.test.values] } : { ...p.test } })),
    value: m.value ? { ...m.value } : null,
  };
}

/** A behaviour section filter (name, equal props, channel) in the journeys' filter form. */
function behaviourFilter(m: Behaviour['counters'][number]['match']): Filter {
  return {
    names: m.name === undefined ? [] : typeof m.name === 'string' ? [m.name] : [...m.name],
    channels: m.channel === undefined ? [] : [m.channel],
    props: Object.entries(m.props ?? {}).map(([key, value]) => ({ key, test: { kind: 'equals', value } })),
    value: null,
  };
}

/** Freezes `value` and everything reachable through its own properties (not the contents of Sets and Maps). */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
