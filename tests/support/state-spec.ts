import type { StateSpec } from '../../src/state/spec.js';

const DAY = 86_400_000;

/**
 * A compiled state spec with the least in it: UTC, one `active` metric, the default lifecycle
 * thresholds, 2 h of allowed lateness, no behaviour. `over` adds what a test is about.
 */
export function minimalStateSpec(over: Partial<StateSpec> = {}): StateSpec {
  return {
    reportingTimeZone: 'UTC',
    allowedLatenessMs: 7_200_000,
    maxFutureSkewMs: 300_000,
    metrics: [{ name: 'active', events: null }],
    lifecycle: { newForMs: 7 * DAY, dormantAfterMs: 14 * DAY, churnedAfterMs: 30 * DAY, reactivatedForMs: 7 * DAY },
    counters: [],
    sums: [],
    streaks: [],
    traitKeys: [],
    breakdowns: [],
    deviceSignups: [],
    ...over,
  };
}
