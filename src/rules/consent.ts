import type { AppEvent } from '../contract/event.js';
import { matchesFilter } from './filter.js';
import { JOURNEY_STATE_BOUNDS, type ConsentRecord } from './journey-state.js';
import type { PolicySpec } from './rules-spec.js';

export interface ConsentChange {
  channel: string;
  granted: boolean;
  at: number;
}

const CHANNEL = /^[a-z][a-z0-9_-]{0,31}$/;
const YES = new Set(['true', '1', 'yes', 'granted', 'opt_in', 'in']);
const NO = new Set(['false', '0', 'no', 'denied', 'opt_out', 'out']);

/**
 * Records the consent choices an event carries (policy.consent.events), in place. A choice
 * older (by event time) than the one recorded is ignored, so a late opt-in cannot undo a newer
 * opt-out. A prop that does not name a channel or a yes/no is ignored.
 */
export function applyConsentEvent(policy: PolicySpec, consent: Record<string, ConsentRecord>, e: AppEvent): ConsentChange[] {
  const changes: ConsentChange[] = [];
  for (const rule of policy.consent.events) {
    if (!matchesFilter(rule.match, e)) continue;
    const channel = rule.channel.kind === 'fixed' ? rule.channel.channel : e.props[rule.channel.prop];
    let granted: boolean | undefined;
    if (rule.grant.kind === 'fixed') granted = rule.grant.grant;
    else {
      const v = (e.props[rule.grant.prop] ?? '').trim().toLowerCase();
      granted = YES.has(v) ? true : NO.has(v) ? false : undefined;
    }
    if (channel === undefined || !CHANNEL.test(channel) || granted === undefined) continue;
    const prior = consent[channel];
    if (prior !== undefined && prior.at > e.timeMs) continue;
    if (prior === undefined && Object.keys(consent).length >= JOURNEY_STATE_BOUNDS.consentChannels) continue;
    consent[channel] = { granted, at: e.timeMs };
    changes.push({ channel, granted, at: e.timeMs });
  }
  return changes;
}

/** Whether a touch may go to `channel`, and whether that is the user's own choice or a default. */
export function consentFor(policy: PolicySpec, consent: Readonly<Record<string, ConsentRecord>>, channel: string): { granted: boolean; recorded: boolean } {
  const own = Object.prototype.hasOwnProperty.call(consent, channel) ? consent[channel] : undefined;
  if (own !== undefined) return { granted: own.granted, recorded: true };
  const d = policy.consent.channelDefaults[channel];
  return { granted: d ?? policy.consent.defaultGranted, recorded: false };
}
