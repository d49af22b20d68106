import { createHash } from 'node:crypto';

export interface TouchOccurrence {
  journeyId: string;
  stepId: string;
  userId: string;
  /** The triggering event id, or the timer's due time (ms) for a timer-triggered touch. */
  occurrence: string | number;
}

/**
 * The deterministic touch id of DESIGN §5: the same decision made again (a replayed batch, a
 * second instance after a rebalance) yields the same id, which BullMQ and the send ledger then
 * deduplicate. `t` + 32 hex digits of SHA-256 over the length-prefixed parts (so ("ab","c") and
 * ("a","bc") differ): never all digits, no `:` (BullMQ) and no `.` (Standard Webhooks).
 */
export function touchId(o: TouchOccurrence): string {
  const h = createHash('sha256');
  for (const part of [o.journeyId, o.stepId, o.userId, String(o.occurrence)]) h.update(`${part.length}:${part};`);
  return `t${h.digest('hex').slice(0, 32)}`;
}
