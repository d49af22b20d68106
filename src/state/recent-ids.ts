/**
 * How an event id is kept in a user's `recentIds` (the latest 32, so a producer's retry of a
 * recent event is a no-op). Ids up to 15 characters are kept as they are. Longer ones — a UUID
 * is 36 — are kept as a 64-bit hash, '#' and 14 base-36 digits: with UUIDs from real producers
 * the list was over half of an active user's stored state (0.65 -> 1.6 KB), in Redis memory, on
 * the wire and in every decode and encode; an id of the contract's maximum length would have
 * made it 4 KB.
 *
 * A hash can collide: two different ids of one user among their latest 32 events with the same
 * 64 bits would make the second look like a retry, and it would be dropped. With 32 ids that is
 * about 32 / 2^64 (2e-18) per event. Ids are chosen by the producer, which is trusted to send
 * the user's own events; a producer crafting collisions could as well leave events out.
 */
const KEPT_AS_IS = 15;
const HASHED = 35; // '#': an id that starts with it is hashed too, so no kept id can look like a hash

export function recentIdKey(eventId: string): string {
  if (eventId.length <= KEPT_AS_IS && eventId.charCodeAt(0) !== HASHED) return eventId;
  // Two MurmurHash3 (x86, 32-bit) accumulators with different seeds, over the UTF-16 code
  // units in one pass; each finalised half is written as 7 base-32 digits by hand
  // (Number#toString(36) cost 250 ns a call, more than the hashing).
  let a = 0x9747b28c;
  let b = 0x5bd1e995;
  for (let i = 0; i < eventId.length; i++) {
    let k = Math.imul(eventId.charCodeAt(i), 0xcc9e2d51);
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    a ^= k;
    a = (Math.imul((a << 13) | (a >>> 19), 5) + 0xe6546b64) | 0;
    b ^= k;
    b = (Math.imul((b << 13) | (b >>> 19), 5) + 0xe6546b64) | 0;
  }
  a = mix(a ^ eventId.length);
  b = mix(b ^ eventId.length);
  return String.fromCharCode(
    HASHED,
    D(a >>> 27), D(a >>> 22), D(a >>> 17), D(a >>> 12), D(a >>> 7), D(a >>> 2), D(a << 3),
    D(b >>> 27), D(b >>> 22), D(b >>> 17), D(b >>> 12), D(b >>> 7), D(b >>> 2), D(b << 3),
  );
}

/** Has the user's state seen this event? `key` is recentIdKey(eventId). */
export function seenRecently(recentIds: readonly string[], eventId: string, key: string): boolean {
  // States stored before ids were hashed hold long ids as they were: the raw id is looked for
  // too. Such entries leave a user's list 32 events later; the lookup stays (it costs one more
  // scan of 32 short strings, for long ids only) because a user may be idle for months. An
  // engine older than this one looks for raw ids only: during a rolling upgrade, or after a
  // rollback, a retry of one of a user's latest long-id events can be applied twice.
  return recentIds.includes(key) || (key !== eventId && recentIds.includes(eventId));
}

/** MurmurHash3's finaliser: every input bit reaches every output bit. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

const DIGITS = '0123456789abcdefghijklmnopqrstuv';
/** The character code of the base-32 digit of the low 5 bits. */
const D = (v: number): number => DIGITS.charCodeAt(v & 31);
