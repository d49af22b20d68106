import type { LifecycleSpec } from './spec.js';

export type Stage = 'new' | 'active' | 'dormant' | 'churned' | 'reactivated';
export const STAGES: readonly Stage[] = ['new', 'active', 'dormant', 'churned', 'reactivated'];

/** The facts a stage is derived from. */
export interface LifecycleFacts {
  firstSeen: number;
  lastSeen: number;
  /** Time of the latest event that ended a gap of at least `dormantAfterMs`. */
  reactivatedAt?: number;
}

export interface StageAt {
  stage: Stage;
  since: number;
}

/**
 * The stage at time `t`, a pure function of three timestamps. Deriving the stage instead of
 * storing transitions makes it independent of when a timer happened to fire: a replay, a late
 * sweep or an early one all give the same answer for the same events.
 */
export function stageAt(f: LifecycleFacts, t: number, spec: LifecycleSpec): StageAt {
  const idle = t - f.lastSeen;
  if (idle >= spec.churnedAfterMs) return { stage: 'churned', since: f.lastSeen + spec.churnedAfterMs };
  if (idle >= spec.dormantAfterMs) return { stage: 'dormant', since: f.lastSeen + spec.dormantAfterMs };
  if (f.reactivatedAt !== undefined && t - f.reactivatedAt < spec.reactivatedForMs) {
    return { stage: 'reactivated', since: f.reactivatedAt };
  }
  if (t - f.firstSeen < spec.newForMs) return { stage: 'new', since: f.firstSeen };
  const activeSince =
    f.reactivatedAt !== undefined
      ? Math.max(f.firstSeen + spec.newForMs, f.reactivatedAt + spec.reactivatedForMs)
      : f.firstSeen + spec.newForMs;
  return { stage: 'active', since: activeSince };
}

/**
 * The next time after `t` at which `stageAt` can change with no new event: when the timer
 * for this user is due. Null when nothing more can happen (churned).
 */
export function nextTransitionAt(f: LifecycleFacts, t: number, spec: LifecycleSpec): number | null {
  const candidates = [
    f.firstSeen + spec.newForMs,
    f.lastSeen + spec.dormantAfterMs,
    f.lastSeen + spec.churnedAfterMs,
  ];
  if (f.reactivatedAt !== undefined) candidates.push(f.reactivatedAt + spec.reactivatedForMs);
  let next = Infinity;
  for (const c of candidates) if (c > t && c < next) next = c;
  return next === Infinity ? null : next;
}
