/** What the broker says about one partition: the first offset still kept and the next to be written. */
export interface Watermarks {
  low: number;
  high: number;
}

/**
 * Consumer lag of one partition: the messages after the group's committed offset. Nudge
 * commits an offset only after its batch is committed to Redis, so this counts messages not
 * yet applied (plus a commit in flight) — what an operator wants to alert on — not merely
 * messages not yet read, which a backpressured pipeline holding batches would hide.
 *
 * With no committed offset (`undefined`: a new group, or a partition never committed) the
 * group starts at the earliest offset, so every retained message is still to be applied.
 * A committed offset below the low watermark (retention deleted what was never applied) counts
 * from the low watermark: the deleted messages will never be read.
 */
export function consumerLag(w: Watermarks, committed: number | undefined): number {
  const from = committed === undefined ? w.low : Math.max(committed, w.low);
  return Math.max(0, w.high - from);
}
