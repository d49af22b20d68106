import { createHash } from 'node:crypto';
import type { JourneySpec, PolicySpec } from './rules-spec.js';

/**
 * Deterministic assignment (DESIGN §4, §5): the same user and journey give the same variant,
 * holdout and touch id in every process, after every restart, without storing anything.
 * SHA-256 of length-prefixed parts, so ("ab","c") and ("a","bc") differ; each use has its own
 * first part, so holdout and variant draws are independent of each other.
 */

function digest(parts: readonly string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(`${p.length}:${p};`);
  return h.digest('hex');
}

/** A number in [0, 1) from the parts: the first 52 bits of the digest, exact as a double. */
export function unitHash(...parts: string[]): number {
  return parseInt(digest(parts).slice(0, 13), 16) / 2 ** 52;
}

export type Group = 'variant' | 'holdout' | 'global_holdout';

export interface Assignment {
  group: Group;
  /** The variant id; "" when the journey has none. Held-out users get the variant they would have had. */
  variant: string;
}

/** True when the user is in the global holdout (changing `holdoutSalt` reshuffles it). */
export function inGlobalHoldout(policy: PolicySpec, userId: string): boolean {
  return policy.globalHoldout > 0 && unitHash('global-holdout', policy.holdoutSalt, userId) < policy.globalHoldout;
}

export function assign(journey: JourneySpec, policy: PolicySpec, userId: string): Assignment {
  const variant = pickVariant(journey, userId);
  if (journey.useGlobalHoldout && inGlobalHoldout(policy, userId)) return { group: 'global_holdout', variant };
  if (journey.holdout > 0 && unitHash('holdout', journey.id, userId) < journey.holdout) return { group: 'holdout', variant };
  return { group: 'variant', variant };
}

/** The variant by weight; stable while the variants and weights stay the same. */
export function pickVariant(journey: Pick<JourneySpec, 'id' | 'variants'>, userId: string): string {
  if (journey.variants.length === 0) return '';
  const total = journey.variants.reduce((s, v) => s + v.weight, 0);
  const u = unitHash('variant', journey.id, userId) * total;
  let acc = 0;
  for (const v of journey.variants) {
    acc += v.weight;
    if (u < acc) return v.id;
  }
  return journey.variants[journey.variants.length - 1]!.id;
}

export interface TouchKey {
  journeyId: string;
  stepId: string;
  userId: string;
  /** The triggering event id, or a timer's due time. */
  occurrence: string;
}

/**
 * The touch id: `t` + 32 hex digits of SHA-256 over (journey, step, user, occurrence), the same
 * construction as touches/touch-id.ts. Safe as a BullMQ job id (no ":", never all digits, which
 * BullMQ refuses as custom ids) and as a Standard Webhooks `webhook-id` (no ".").
 */
export function touchIdOf(k: TouchKey): string {
  return `t${digest([k.journeyId, k.stepId, k.userId, k.occurrence]).slice(0, 32)}`;
}

/** True for an id BullMQ accepts as a custom job id and Standard Webhooks as a `webhook-id`. */
export function isValidTouchId(id: string): boolean {
  return /^[A-Za-z0-9_-]{1,128}$/.test(id) && !/^[0-9]+$/.test(id);
}
