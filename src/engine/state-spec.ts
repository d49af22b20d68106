import type { NudgeConfig } from '../config/schema.js';
import { compileRules } from '../rules/compile-rules.js';
import type { EventFilter, StateSpec } from '../state/spec.js';

type Match = NudgeConfig['behaviour']['counters'][number]['match'];

/** Compiles the config's activity, lifecycle, behaviour and journey sections for the state step. */
export function compileStateSpec(config: NudgeConfig): StateSpec {
  return {
    reportingTimeZone: config.time.reportingTimeZone,
    allowedLatenessMs: config.time.allowedLatenessMs,
    maxFutureSkewMs: config.time.maxFutureSkewMs,
    metrics: config.activity.metrics.map((m) => ({ name: m.name, events: m.events === undefined ? null : new Set(m.events) })),
    lifecycle: {
      newForMs: config.lifecycle.newForMs,
      dormantAfterMs: config.lifecycle.dormantAfterMs,
      churnedAfterMs: config.lifecycle.churnedAfterMs,
      reactivatedForMs: config.lifecycle.reactivatedForMs,
    },
    counters: config.behaviour.counters.map((c) => ({ name: c.name, filter: filter(c.match), keep: c.keep, withinMs: c.withinMs })),
    sums: config.behaviour.sums.map((s) => ({ name: s.name, filter: filter(s.match), windowMs: s.windowMs, bucketMs: s.bucketMs })),
    streaks: config.behaviour.streaks.map((s) => ({ name: s.name, filter: filter(s.match) })),
    deviceSignups: config.behaviour.deviceSignups.map((d) => ({ name: d.name, filter: filter(d.match), withinMs: d.withinMs, keepForMs: d.keepForMs, maxPerDevice: d.maxPerDevice })),
    // A breakdown by a trait needs the trait kept, listed or not.
    traitKeys: [...new Set([...config.behaviour.traits, ...config.activity.breakdowns.flatMap((b) => (b.trait !== undefined ? [b.trait] : []))])],
    breakdowns: config.activity.breakdowns.map((b) => ({
      name: b.name,
      source: b.by === 'trait' ? { kind: 'trait', key: b.trait as string } : { kind: 'channel' },
      values: b.values === undefined ? null : new Set(b.values),
      maxValues: b.maxValues,
    })),
    rules: compileRules(config),
  };
}

function filter(m: Match): EventFilter {
  const names = m.name === undefined ? [] : typeof m.name === 'string' ? [m.name] : [...m.name];
  return {
    names: new Set(names),
    props: { ...(m.props ?? {}) },
    ...(m.channel !== undefined ? { channel: m.channel } : {}),
  };
}
