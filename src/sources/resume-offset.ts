/** librdkafka's logical offset for "the first message still in the partition". */
export const OFFSET_BEGINNING = -2;

/**
 * The group's committed offset of a partition as fetched at assignment: an offset, `'none'`
 * when the group never committed one, `'unknown'` when it could not be fetched.
 */
export type CommittedOffset = number | 'none' | 'unknown';

/**
 * Where a newly assigned partition starts reading (DESIGN §5: Redis, not the group's committed
 * offset, is the source of truth). `needed` is the offset the lane's state needs next — its
 * fence + 1, 0 when nothing was applied — or undefined when the lane has no fence (its claim
 * was abandoned). Returns an offset to assign the partition at, or undefined to let librdkafka
 * start where it would anyway: the committed offset, or `auto.offset.reset` (earliest) when
 * there is none.
 *
 * The rule is "never past the fence": start at min(committed, fence + 1).
 * - Committed ahead of the fence: Redis lost its newest writes (restored from an older AOF or
 *   snapshot, or the Kafka commit landed and Redis lost its last second under
 *   `appendfsync everysec`). Starting at the committed offset would skip fence+1..committed-1
 *   forever; go back to fence + 1.
 * - No fence but a committed offset: Redis lost the lane altogether; read from the beginning,
 *   which rebuilds it exactly (stream time, not the wall clock, judges lateness — DESIGN §4).
 *   What retention has already deleted is gone either way.
 * - Committed at or behind the fence (the normal case: offsets are committed after the Redis
 *   commit, asynchronously), or none (a new group): start there. Whatever is re-read up to the
 *   fence is skipped by the lane and refused by the commit script, so this costs reading, never
 *   correctness — and it keeps a new group's full replay a real replay (no forward jump).
 * - Committed offset unknown (the fetch failed): assume it is ahead and start at fence + 1,
 *   the one position that is always safe.
 */
export function resumeOffset(needed: number | undefined, committed: CommittedOffset): number | undefined {
  if (needed === undefined) return undefined;
  if (committed === 'none') return undefined;
  if (committed !== 'unknown' && committed <= needed) return undefined;
  return needed === 0 ? OFFSET_BEGINNING : needed;
}
