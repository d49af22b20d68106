/**
 * Every Redis key of the touches layer is built here (STYLE.md habit 5; never ioredis
 * `keyPrefix`, which does not apply to keys built inside Lua or by BullMQ).
 *
 * Per lane (written by the state commit script, so inside the lane's hash tag):
 *   {nudge:nudge.events:3}:outbox            touches decided and not yet in BullMQ (hash: touchId -> entry)
 *   {nudge:nudge.events:3}:outbox:rejected   entries the relay could not read (hash, kept for an operator)
 * Per namespace (delivery side, one key per operation, so any slot):
 *   nudge:touches:sent:<touchId>             send ledger (string: sending|sent|ambiguous, with TTL)
 *   nudge:touches:disabled                   endpoints disabled by 410 Gone (hash: endpoint -> JSON)
 *   {nudge:touches:budget:<journey>}         a journey's spend: total and per day (hash)
 *   {nudge:touches:budget:<journey>}:r:<touchId>   a touch's reservation against it (string, TTL)
 *   {nudge:touches:rate:<channel>}           the channel's next free send slot (GCRA theoretical arrival time)
 *   {nudge:touches:rate:<channel>}:r:<touchId>:<attempt>   the slot reserved by one attempt
 * BullMQ's own keys live under its prefix (`bull:nudge-touches:*` by default).
 */

const LANE_TAG = /^\{[^{}]+\}$/;

/**
 * The outbox of one lane. `laneTag` is the lane's Redis Cluster hash tag, `{ns:topic:partition}`
 * (`laneKeys(...).tag` in state/keys.ts), so the commit script writes the outbox in the same
 * slot as the states and the fence it commits with.
 */
export function outboxKey(laneTag: string): string {
  if (!LANE_TAG.test(laneTag)) throw new RangeError(`a lane tag looks like {ns:topic:partition}, got ${JSON.stringify(laneTag)}`);
  return `${laneTag}:outbox`;
}

/** Where the relay keeps outbox entries it could not read; same slot as the outbox. */
export function outboxRejectsKey(outbox: string): string {
  return `${outbox}:rejected`;
}

export interface TouchKeys {
  ledger(touchId: string): string;
  /** A journey's budget spend (hash) and the per-touch reservations beside it (one slot). */
  budget(journeyId: string): string;
  budgetReservation(journeyId: string, touchId: string): string;
  disabledEndpoints: string;
  rate(channel: string): string;
  rateReservation(channel: string, touchId: string, attempt: number): string;
}

export function touchKeys(namespace: string): TouchKeys {
  const base = `${namespace}:touches`;
  const rateTag = (channel: string) => `{${base}:rate:${channel}}`;
  return {
    ledger: (touchId) => `${base}:sent:${touchId}`,
    budget: (journeyId) => `{${base}:budget:${journeyId}}`,
    budgetReservation: (journeyId, touchId) => `{${base}:budget:${journeyId}}:r:${touchId}`,
    disabledEndpoints: `${base}:disabled`,
    rate: rateTag,
    rateReservation: (channel, touchId, attempt) => `${rateTag(channel)}:r:${touchId}:${attempt}`,
  };
}
