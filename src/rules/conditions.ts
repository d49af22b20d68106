import { dayNumber } from '../time/calendar.js';
import type { Condition } from './rules-spec.js';
import { countWithin, deviceSignupsWithin, liveStreak, type UserFacts } from './user-facts.js';

/**
 * The index of the first condition that does not hold on `facts` at time `t`, or -1 when all
 * hold. Conditions are checked at entry, on the state after the triggering event.
 */
export function firstFailingCondition(conditions: readonly Condition[], facts: UserFacts, t: number, tz: string): number {
  for (let i = 0; i < conditions.length; i++) {
    const c = conditions[i]!;
    if (holds(c, facts, t, tz) === c.not) return i;
  }
  return -1;
}

function holds(c: Condition, facts: UserFacts, t: number, tz: string): boolean {
  switch (c.kind) {
    case 'stage':
      return c.stages.includes(facts.stage);
    case 'trait': {
      const v = Object.prototype.hasOwnProperty.call(facts.traits, c.trait) ? facts.traits[c.trait] : undefined;
      if (c.exists !== null) return (v !== undefined) === c.exists;
      return v !== undefined && (c.in ?? []).includes(v);
    }
    case 'counter':
      return between(countWithin(facts.counters[c.counter], t, c.withinMs), c.atLeast, c.atMost);
    case 'sum':
      return between(facts.sums[c.sum] ?? 0, c.atLeast, c.atMost);
    case 'streak':
      return between(liveStreak(facts.streaks[c.streak], dayNumber(t, tz)), c.atLeast, c.atMost);
    case 'deviceSignups':
      return between(deviceSignupsWithin(facts.deviceSignups[c.deviceSignups], t, c.withinMs), c.atLeast, c.atMost);
  }
}

function between(n: number, atLeast: number | null, atMost: number | null): boolean {
  return (atLeast === null || n >= atLeast) && (atMost === null || n <= atMost);
}
