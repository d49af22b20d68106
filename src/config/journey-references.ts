import type { z } from 'zod';
import type { JourneyConfig } from './journeys-section.js';
import type { PolicyConfig } from './policy-section.js';
import type { TouchesConfig } from './touches-section.js';

/**
 * Rules across sections, checked once the sections themselves are valid: a journey may only
 * name behaviour counters, sums, streaks and traits that the state step keeps (anything else
 * would silently never match), and channels the touches section delivers (when it lists any).
 */

interface Behaviour {
  counters: readonly { name: string; keep: number }[];
  sums: readonly { name: string }[];
  streaks: readonly { name: string }[];
  traits: readonly string[];
  deviceSignups: readonly { name: string }[];
}

export interface ReferenceInput {
  journeys: readonly JourneyConfig[];
  policy: PolicyConfig;
  touches: TouchesConfig;
  behaviour: Behaviour;
  /** Traits kept for breakdowns (kept whether or not behaviour.traits lists them). */
  breakdownTraits: readonly string[];
  /** Indexes of journeys with problems of their own, not checked here. */
  skip: ReadonlySet<number>;
}

export function checkJourneyReferences(cfg: ReferenceInput, ctx: z.RefinementCtx): void {
  const counters = new Map(cfg.behaviour.counters.map((c) => [c.name, c.keep]));
  const sums = new Set(cfg.behaviour.sums.map((s) => s.name));
  const streaks = new Set(cfg.behaviour.streaks.map((s) => s.name));
  const traits = new Set([...cfg.behaviour.traits, ...cfg.breakdownTraits]);
  const devices = new Set(cfg.behaviour.deviceSignups.map((d) => d.name));
  const channels = new Set(Object.keys(cfg.touches.channels));
  const list = (names: Iterable<string>) => [...names].join(', ') || 'none';

  cfg.journeys.forEach((j, i) => {
    if (cfg.skip.has(i)) return;
    const at = (...path: PropertyKey[]) => ['journeys', i, ...path];
    const issue = (path: PropertyKey[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    const counter = (name: string, atLeast: number | undefined, path: PropertyKey[]) => {
      const keep = counters.get(name);
      if (keep === undefined) issue(path, `names no behaviour counter; define it under behaviour.counters (defined: ${list(counters.keys())})`);
      else if (atLeast !== undefined && atLeast > keep) issue(path, `the counter keeps the last ${keep} events, so it cannot count ${atLeast}; raise its keep to at least ${Math.ceil(atLeast)}`);
    };

    const t = j.trigger;
    if (t.type === 'count' && t.counter !== undefined) counter(t.counter, t.atLeast, at('trigger', 'counter'));
    if (t.type === 'streak' && t.streak !== undefined && !streaks.has(t.streak)) {
      issue(at('trigger', 'streak'), `names no behaviour streak; define it under behaviour.streaks (defined: ${list(streaks)})`);
    }
    j.conditions.forEach((c, k) => {
      if (c.counter !== undefined) counter(c.counter, c.atLeast, at('conditions', k, 'counter'));
      if (c.sum !== undefined && !sums.has(c.sum)) issue(at('conditions', k, 'sum'), `names no behaviour sum; define it under behaviour.sums (defined: ${list(sums)})`);
      if (c.streak !== undefined && !streaks.has(c.streak)) issue(at('conditions', k, 'streak'), `names no behaviour streak (defined: ${list(streaks)})`);
      if (c.trait !== undefined && !traits.has(c.trait)) issue(at('conditions', k, 'trait'), `is not a kept trait, so it is never set; add it to behaviour.traits (kept: ${list(traits)})`);
      if (c.deviceSignups !== undefined) {
        if (!devices.has(c.deviceSignups)) issue(at('conditions', k, 'deviceSignups'), `names no device sign-up count; define it under behaviour.deviceSignups (defined: ${list(devices)})`);
        // The lane loads a device's sign-ups only for events that can trigger such a journey.
        const named = (t.type === 'event' || t.type === 'firstTime') && (t.match?.names.length ?? 0) > 0;
        if (!named) {
          issue(at('conditions', k, 'deviceSignups'), 'needs a trigger of type event or firstTime whose match names its events (match: { name: ... }): the device\'s sign-ups are loaded only for those events');
        }
      }
    });
    j.attributes.forEach((a, k) => {
      if (!traits.has(a)) issue(at('attributes', k), `is not a kept trait, so it would always be empty; add it to behaviour.traits (kept: ${list(traits)})`);
    });
    if (channels.size > 0) {
      const used = [...j.channel.map((c, k) => [c, ['channel', k]] as const), ...j.steps.flatMap((s, k) => (s.channel ?? []).map((c, n) => [c, ['steps', k, 'channel', n]] as const))];
      for (const [c, path] of used) {
        if (!channels.has(c)) issue(at(...path), `names a channel touches.channels does not define (defined: ${list(channels)})`);
      }
    }
    if (j.holdout > 0 && j.conversion === undefined) {
      issue(at('holdout'), 'a holdout measures nothing without a conversion; add conversion: { match: ..., within: 7d } or set holdout: 0%');
    }
    if (j.quietHours !== undefined && cfg.policy.quietHours === undefined) {
      issue(at('quietHours'), 'is set but policy.quietHours is not, so there are no quiet hours to defer or drop in');
    }
  });
}
