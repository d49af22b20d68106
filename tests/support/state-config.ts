import type { RefSpec } from './reference-model.js';

/**
 * The state sections (time, activity, lifecycle, behaviour) that crash-restart, poison-events
 * and the chaos tests run the engine with, twice: as the engine's YAML and as the brute-force
 * model's spec, side by side so a difference between the two is visible in one place.
 */
export const DAY = 86_400_000;
export const ZONE = 'Asia/Shanghai';

export interface StateYamlOptions {
  /** `time.maxTriggerAge`, for journeys on a replayed log. @default the engine's default */
  maxTriggerAge?: string;
  /** `lifecycle.sweepInterval`; null = the engine's default. @default '200ms' */
  sweepInterval?: string | null;
  /** Count sign-ups per device (`behaviour.deviceSignups`: one definition, SIGNUPS_NAME, on register). */
  deviceSignups?: boolean;
}

/**
 * The device sign-up definition stateYaml({ deviceSignups: true }) adds (STATE_REF_SPEC's `signups`
 * follows it). Kept 60 days, longer than the chaos logs (40 days, plus a clamped future event at
 * most two days on): the reference trims nothing, so neither may the engine.
 */
export const SIGNUPS_NAME = 'signups_24h';

export function stateYaml(o: StateYamlOptions = {}): string {
  const sweep = o.sweepInterval === undefined ? '200ms' : o.sweepInterval;
  return `
time:
  reportingTimeZone: ${ZONE}
  allowedLateness: 2h
  maxFutureSkew: 5m${o.maxTriggerAge !== undefined ? `\n  maxTriggerAge: ${o.maxTriggerAge}` : ''}
activity:
  metrics:
    - name: active
    - name: financial
      events: [transfer_done, fund_purchase, payment]
lifecycle:
  newFor: 7d
  dormantAfter: 14d
  churnedAfter: 30d
  reactivatedFor: 7d${sweep !== null ? `\n  sweepInterval: ${sweep}` : ''}
behaviour:
  counters:
    - name: loan_views
      match: { name: page_view, props: { page: loan_detail } }
      keep: 3
      within: 24h
  streaks:
    - name: checkin
      match: { name: checkin }
${o.deviceSignups === true ? `  deviceSignups:\n    - name: ${SIGNUPS_NAME}\n      match: { name: register }\n      within: 24h\n      keepFor: 60d\n` : ''}`;
}

export const STATE_YAML = stateYaml();

export const STATE_REF_SPEC: RefSpec = {
  reportingTimeZone: ZONE,
  allowedLatenessMs: 2 * 3_600_000,
  maxFutureSkewMs: 5 * 60_000,
  metrics: [
    { name: 'active', events: null },
    { name: 'financial', events: ['transfer_done', 'fund_purchase', 'payment'] },
  ],
  newForMs: 7 * DAY,
  dormantAfterMs: 14 * DAY,
  churnedAfterMs: 30 * DAY,
  reactivatedForMs: 7 * DAY,
  counters: [{ name: 'loan_views', eventName: 'page_view', props: { page: 'loan_detail' }, keep: 3, withinMs: DAY }],
  streaks: [{ name: 'checkin', eventName: 'checkin' }],
  recentIds: 32,
  // Only read where the engine ran with stateYaml({ deviceSignups: true }).
  signups: { eventName: 'register' },
};
