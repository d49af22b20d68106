import { validateTouchJob, type TouchJob } from './touch-job.js';

/**
 * The outbox entry format. An outbox is a Redis hash per lane (`outboxKey(laneTag)`):
 *   field = touch id, value = the `TouchJob` as JSON (exactly the BullMQ `job.data`).
 *
 * Why a hash (not a list or a stream):
 * - The commit script writes it with one `HSET` in the lane's slot, atomically with the state.
 * - The touch id is the field, so writing the same decision twice keeps one entry.
 * - The relay deletes exactly the fields it added to BullMQ, and only if their value is still
 *   the one it read (a compare-and-delete in Lua): entries written meanwhile stay. A list can
 *   only be trimmed by position and a stream needs its own entry ids mapped to touch ids.
 * - Order does not matter between touches: each carries its own `sendAt`.
 *
 * The commit script (state/) receives `field` and `value` as ARGV and runs
 * `redis.call('HSET', KEYS[outbox], field, value)`.
 */
export interface OutboxEntry {
  field: string;
  value: string;
}

/** An entry bigger than this is refused by the relay (and should never be written). */
export const MAX_OUTBOX_ENTRY_BYTES = 16 * 1024;

export function encodeOutboxEntry(job: TouchJob): OutboxEntry {
  const checked = validateTouchJob(job);
  if (!checked.ok) throw new RangeError(`not a valid touch job: ${checked.reason}`);
  const value = JSON.stringify(checked.job);
  if (Buffer.byteLength(value) > MAX_OUTBOX_ENTRY_BYTES) throw new RangeError(`touch job is larger than ${MAX_OUTBOX_ENTRY_BYTES} bytes`);
  return { field: checked.job.touchId, value };
}

export type DecodedEntry = { ok: true; job: TouchJob } | { ok: false; reason: string };

export function decodeOutboxEntry(field: string, value: string): DecodedEntry {
  if (Buffer.byteLength(value) > MAX_OUTBOX_ENTRY_BYTES) return { ok: false, reason: `entry is larger than ${MAX_OUTBOX_ENTRY_BYTES} bytes` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return { ok: false, reason: 'entry is not JSON' };
  }
  const checked = validateTouchJob(parsed);
  if (!checked.ok) return checked;
  if (checked.job.touchId !== field) return { ok: false, reason: 'entry field is not its touchId' };
  return checked;
}
